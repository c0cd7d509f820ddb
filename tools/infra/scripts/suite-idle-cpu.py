"""The running suite's CPU over a window: utime + stime of every process ig-infra started (its pid files and
PostgreSQL's postmaster.pid under the run directory) and all their descendants, summed by program name.

    uv run python tools/infra/scripts/suite-idle-cpu.py [SECONDS]     # default 60; run with the suite idle
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

RUN = Path(os.environ.get("IG_RUN_DIR", "/var/tmp/ig-mc"))
TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                kids.setdefault(int(_stat(int(entry))[1]), []).append(int(entry))
            except OSError:
                continue
    return kids


def _roots() -> set[int]:
    pids: set[int] = set()
    for path in [*RUN.rglob("*.pid")]:
        try:
            pids.add(int(path.read_text().split()[0]))
        except (OSError, ValueError, IndexError):
            continue
    return pids


def suite_processes() -> set[int]:
    kids, found, stack = _children(), set(), list(_roots())
    while stack:
        pid = stack.pop()
        if pid not in found and Path(f"/proc/{pid}").exists():
            found.add(pid)
            stack.extend(kids.get(pid, []))
    return found


def cpu_by_program(pids: set[int]) -> dict[int, tuple[str, float]]:
    seen: dict[int, tuple[str, float]] = {}
    for pid in pids:
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
            fields = _stat(pid)
            seen[pid] = (name, (int(fields[11]) + int(fields[12])) / TICK)
        except OSError:
            continue
    return seen


def main() -> None:
    window = float(sys.argv[1]) if len(sys.argv) > 1 else 60.0
    pids = suite_processes()
    before = cpu_by_program(pids)
    time.sleep(window)
    after = cpu_by_program(pids)
    totals: dict[str, float] = {}
    for pid, (name, seconds) in after.items():
        totals[name] = totals.get(name, 0.0) + seconds - before.get(pid, (name, seconds))[1]
    total = sum(totals.values())
    print(f"{len(pids)} processes, {total:.2f} CPU-seconds in {window:.0f} s "
          f"({100 * total / window:.0f} % of one core)")
    for name, seconds in sorted(totals.items(), key=lambda item: -item[1])[:12]:
        print(f"  {name:20s} {seconds:.2f}")


if __name__ == "__main__":
    main()
