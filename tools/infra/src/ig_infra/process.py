"""Start, find and stop the long-running processes the infra owns, each with a pid file and a log file."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ig_common.ports import free_port


class InfraError(RuntimeError):
    """Something the person running the tool must fix; the message says what."""


def free_ports() -> Callable[[int], int]:
    """A port map for a second copy of a layout on one host: each base port asked for gets a distinct free port,
    the same one each time it is asked for (tests that start a region beside the suite's own ports)."""
    chosen: dict[int, int] = {}

    def port(base: int) -> int:
        while base not in chosen:
            candidate = free_port()
            if candidate not in chosen.values():
                chosen[base] = candidate
        return chosen[base]

    return port


def port_open(host: str, port: int, timeout: float = 0.3) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        return sock.connect_ex((host, port)) == 0


def stat_fields(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after "pid (comm)" (the state is [0]); OSError when the process is gone."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def state_of(pid: int) -> str | None:
    """The kernel's state letter (``T`` = stopped, ``Z`` = exited, not yet reaped), or None when gone."""
    try:
        return stat_fields(pid)[0]
    except OSError:
        return None


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (/proc): a figure a busy machine does not distort the way latency is."""
    fields = stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_pids(pid: int) -> list[int]:
    """The direct children of a process (/proc), e.g. a helper process a service started."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(child) for child in (task / "children").read_text().split()]
    return children


def read_pid(pid_file: Path) -> int | None:
    """The pid in ``pid_file`` if that process is running; None when there is none, or it has exited."""
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return None if has_exited(pid) else pid


def has_exited(pid: int) -> bool:
    """True for a process that has exited but is not yet reaped (a zombie): it holds no port, file or memory any
    more. The infra's processes outlive the command that started them, so their parent is then init, and this
    machine's init reaps only every second or two: counted as running, each stop waited that long."""
    return state_of(pid) in ("Z", "X")  # None (no /proc entry to read): kill(pid, 0) said it exists, so running


def spawn(
    command: Sequence[str], *, log_file: Path, pid_file: Path, env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """Start ``command`` detached from this process (own session), output to ``log_file``."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        process = subprocess.Popen(
            list(command), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True,
        )
    pid_file.write_text(str(process.pid))
    return process.pid


def wait_until(check: Callable[[], bool], *, timeout: float, what: str, log_file: Path | None = None,
               alive: Callable[[], bool] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        if alive is not None and not alive():
            raise InfraError(f"{what} exited during start-up; see {log_file}\n{tail(log_file)}")
        time.sleep(0.2)
    raise InfraError(f"{what} not ready after {timeout:.0f}s; see {log_file}\n{tail(log_file)}")


def tail(log_file: Path | None, lines: int = 15) -> str:
    if log_file is None or not log_file.exists():
        return ""
    return "\n".join(log_file.read_text(errors="replace").splitlines()[-lines:])


def terminate(pid_file: Path, *, timeout: float = 20.0) -> bool:
    """SIGTERM the process group, then SIGKILL after ``timeout``; returns True if something was running."""
    pid = read_pid(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and read_pid(pid_file) is not None:
        # A process this one spawned stays a zombie (and "alive" to kill -0) until reaped; others are not ours.
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)
    if read_pid(pid_file) is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        time.sleep(0.2)
    pid_file.unlink(missing_ok=True)
    return True


def ensure_port_free(host: str, port: int, owner: str, variable: str) -> None:
    if port_open(host, port):
        raise InfraError(
            f"port {host}:{port} for {owner} is already taken by another process; stop it or set {variable}"
        )
