"""Running the project's own CLIs as child processes, each with its own log file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ig_release.context import StageFailed
from ig_release.settings import REPO


def console_script(name: str) -> str:
    """A console script of this environment (ig-evidence, ig-migrate, region-test ...)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise StageFailed(f"{name} is not installed in {path.parent} (run `make bootstrap`)")
    return str(path)


def run_logged(command: list[str], log: Path, *, env: dict[str, str] | None = None, timeout: float = 900,
               ok: tuple[int, ...] = (0,), what: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run, append stdout+stderr to ``log``, and fail the stage (naming the log) on an unexpected exit."""
    log.parent.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, **(env or {})}
    try:
        done = subprocess.run(command, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired as error:
        raise StageFailed(f"{what or command[0]} did not finish within {timeout:.0f}s", log) from error
    with log.open("a", encoding="utf-8") as out:
        out.write(f"$ {' '.join(command)}\n{done.stdout}{done.stderr}\n[exit {done.returncode}]\n")
    if done.returncode not in ok:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-12:])
        raise StageFailed(f"{what or command[0]} exited {done.returncode}:\n{tail}", log)
    return done
