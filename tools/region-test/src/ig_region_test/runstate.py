"""One run at a time, and nothing left behind: a lock, a record of what was started, and cleanup on any exit.

The lock is an ``flock`` on a file, so the kernel releases it when the holder dies (even by SIGKILL). Whoever
takes the lock next finds the dead run's record and removes its namespaces and processes before starting.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import IO, Any

from ig_region_test import network

PG_BIN = Path("/usr/lib/postgresql/15/bin")


class Busy(RuntimeError):
    pass


class RunState:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.dir = base / "run"
        self.record = base / "state.json"
        self._lock_file: IO[str] | None = None
        self._record_lock = threading.Lock()  # clusters start in parallel threads, each recording itself

    def acquire(self, wait_seconds: float) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        self.base.chmod(0o755)
        handle = open(self.base / "lock", "w")  # noqa: SIM115  (held for the whole run)
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    handle.close()
                    raise Busy(f"another region-test run holds {self.base / 'lock'}") from None
                time.sleep(0.5)
        self._lock_file = handle

    def release(self) -> None:
        if self._lock_file is not None:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    def begin(self, mode: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o755)
        self._write({"owner_pid": os.getpid(), "mode": mode, "pids": [], "pg_data": []})

    def remember(self, *, pid: int | None = None, pg_data: Path | None = None) -> None:
        with self._record_lock:
            state = self._read()
            if pid is not None:
                state.setdefault("pids", []).append(pid)
            if pg_data is not None and str(pg_data) not in state.setdefault("pg_data", []):
                state["pg_data"].append(str(pg_data))
            self._write(state)

    def _read(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.record.read_text())
            return data
        except (FileNotFoundError, ValueError):
            return {}

    def _write(self, state: dict[str, Any]) -> None:
        tmp = self.record.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(self.record)

    def clean(self) -> list[str]:
        """Remove everything a run (this one, or a dead earlier one) started; safe to call twice."""
        done = []
        state = self._read()
        # PostgreSQL first and with "immediate": a SIGTERM (what namespace cleanup sends) is a *smart* shutdown
        # that waits for clients to leave.
        for data in state.get("pg_data", []):
            if Path(data, "postmaster.pid").exists():
                subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "stop", "-D", data,
                                "-m", "immediate", "-w", "-t", "10"], capture_output=True)
                done.append(f"stopped postgres {data}")
        removed = network.destroy_all()
        if removed:
            done.append(f"removed namespaces/links: {', '.join(removed)}")
        for pid in state.get("pids", []):
            if _kill_group(int(pid)):
                done.append(f"killed process group {pid}")
        if self.dir.exists():
            shutil.rmtree(self.dir, ignore_errors=True)
        self.record.unlink(missing_ok=True)
        return done


def _kill_group(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # our own child that already died is a zombie until reaped: not a leftover
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return False
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    return True


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread when a termination signal arrives, so ``finally`` blocks clean up.

    A KeyboardInterrupt because asyncio lets only that (and SystemExit) escape its callbacks; any other
    BaseException raised by a signal handler inside the event loop would be logged and swallowed.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


def install_signal_handlers() -> Callable[[], None]:
    """SIGTERM/SIGINT/SIGHUP raise ``Interrupted``; returns a function that restores the old handlers."""
    previous: dict[signal.Signals, Any] = {}

    def handler(signum: int, frame: FrameType | None) -> None:
        # Later signals during cleanup are ignored so the cleanup itself is not interrupted.
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        raise Interrupted(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        previous[sig] = signal.signal(sig, handler)

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore
