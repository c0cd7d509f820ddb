"""Freeze a region's processes (SIGSTOP) and thaw exactly those (SIGCONT): the partition of the loopback suite.

Both regions of `make up` listen on 127.0.0.1, so there is no link to cut. A frozen process keeps its sockets
but answers nobody, which is what a region behind a partition looks like from outside. Each process is recorded
with its start time (``/proc/<pid>/stat`` field 22), so a thaw never signals a pid the kernel has given to
another process meanwhile.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ig_infra.process import stat_fields, state_of


@dataclass(frozen=True)
class FrozenProcess:
    name: str  # the component or service it belongs to
    pid: int
    started: int  # clock ticks after boot: identifies this process, not merely its pid

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time) of a live process, or None."""
    try:
        fields = stat_fields(pid)
    except OSError:
        return None
    return int(fields[1]), int(fields[19])


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants, parents before children."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            children.setdefault(stat[0], []).append(int(entry.name))
    ordered, queue = [], [root]
    while queue:
        pid = queue.pop(0)
        ordered.append(pid)
        queue.extend(sorted(children.get(pid, [])))
    return ordered


def freeze(roots: dict[str, int]) -> list[FrozenProcess]:
    """SIGSTOP each root and its descendants; returns what was stopped."""
    frozen: list[FrozenProcess] = []
    for name, root in roots.items():
        if root <= 1:  # never init, and never kill(-1, ...): that would signal every process
            raise ValueError(f"{name}: not a process to freeze: {root}")
        for pid in process_tree(root):
            stat = _stat(pid)
            if stat is None:
                continue
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:
                continue
            frozen.append(FrozenProcess(name, pid, stat[1]))
    # A signal is delivered asynchronously: return once every process is stopped (T), so the partition is in place.
    deadline = time.monotonic() + 5
    while any(state_of(p.pid) not in ("T", None) for p in frozen) and time.monotonic() < deadline:
        time.sleep(0.01)
    return frozen


def thaw(frozen: list[FrozenProcess]) -> list[FrozenProcess]:
    """SIGCONT every recorded process that is still the same process; returns those resumed."""
    resumed = []
    for process in frozen:
        stat = _stat(process.pid)
        if stat is None or stat[1] != process.started:
            continue
        try:
            os.kill(process.pid, signal.SIGCONT)
        except ProcessLookupError:
            continue
        resumed.append(process)
    return resumed
