"""A process that has exited counts as stopped at once, whether or not its parent has reaped it yet."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from ig_infra.process import has_exited, read_pid, state_of, terminate


def _wait_for_state(pid: int, state: str) -> None:
    deadline = time.monotonic() + 10
    while state_of(pid) != state:
        assert time.monotonic() < deadline, f"pid {pid} never reached state {state}"
        time.sleep(0.01)


def test_an_exited_process_its_parent_has_not_reaped_is_not_running(tmp_path: Path) -> None:
    child = subprocess.Popen(["sleep", "0.05"])  # ours to reap: not reaped until wait() below
    try:
        _wait_for_state(child.pid, "Z")
        pid_file = tmp_path / "child.pid"
        pid_file.write_text(str(child.pid))
        assert Path(f"/proc/{child.pid}").exists() and has_exited(child.pid)
        assert read_pid(pid_file) is None
    finally:
        child.wait()


def test_a_running_process_is_running(tmp_path: Path) -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        pid_file = tmp_path / "child.pid"
        pid_file.write_text(str(child.pid))
        assert not has_exited(child.pid)
        assert read_pid(pid_file) == child.pid
    finally:
        child.kill()
        child.wait()


def test_stopping_a_process_does_not_wait_for_its_parent_to_reap_it(tmp_path: Path) -> None:
    """The infra's processes outlive the command that started them, so init is their parent, and this machine's
    init reaps only every second or two. Here the parent never reaps: a stop that waited for the reaping would run
    into its 20-second limit."""
    parent = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, time\n"
         "child = subprocess.Popen(['sleep', '60'], start_new_session=True)\n"
         "print(child.pid, flush=True)\n"
         "time.sleep(60)\n"], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        pid_file = tmp_path / "child.pid"
        pid_file.write_text(parent.stdout.readline().strip())
        started = time.monotonic()
        assert terminate(pid_file)
        assert time.monotonic() - started < 10, "the stop waited for a reaping that never comes"
        assert read_pid(pid_file) is None
    finally:
        parent.kill()
        parent.wait()
