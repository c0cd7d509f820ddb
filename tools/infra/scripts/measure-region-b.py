"""Start region-b as `ig-infra up/services up --regions a,b` do, in a run dir of its own, time the start (twice:
from what is on disk, then once more with everything running) and sum the CPU time (utime + stime, /proc) every
process of it uses while idle, then stop it again.

    uv run python tools/infra/scripts/measure-region-b.py /var/tmp/ig-region-b-measure [--idle-seconds 60]

Uses region-b's ports (region-a's + 200): not while `make up-regions` runs. The run dir is kept, so a second run
measures a start from existing data (the warm start).
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

from ig_infra.cli import start_components, start_services
from ig_infra.paths import Paths
from ig_infra.process import process_cpu_seconds, read_pid
from ig_infra.regions import SecondRegion


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):  # a process that ended meanwhile
            total += process_cpu_seconds(pid)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    options = parser.parse_args()
    options.run_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
    region = SecondRegion.of(Paths(cache=Paths.from_environment().cache, run=options.run_dir))
    try:
        for what in ("start", "start again (all running)"):
            started = time.monotonic()
            start_components([region.global_primary()])
            start_components(region.infra(), prefix="region-b ")
            start_services(region.services(), region.service_infra(), prefix="region-b ", side_by_side=True)
            print(f"region-b {what}: {time.monotonic() - started:.1f}s", flush=True)
        time.sleep(10)  # past the start-ups' own work
        pid_files = [*options.run_dir.rglob("*.pid"), *options.run_dir.rglob("postmaster.pid")]
        roots = sorted({pid for f in pid_files if (pid := read_pid(f) if f.name != "postmaster.pid"
                                                   else int(f.read_text().split()[0])) is not None})
        trees = {root: descendants(root) for root in roots}
        before = {root: cpu(pids) for root, pids in trees.items()}
        time.sleep(options.idle_seconds)
        used = {root: cpu(pids) - before[root] for root, pids in trees.items()}
        for root, seconds in used.items():
            command = Path(f"/proc/{root}/cmdline").read_bytes().replace(b"\0", b" ")[:80].decode(errors="replace")
            print(f"  {seconds:6.2f} CPU-s  {len(trees[root]):3d} processes  {command}")
        total = sum(used.values())
        print(f"region-b idle: {total:.2f} CPU-s in {options.idle_seconds:.0f} s = "
              f"{100 * total / options.idle_seconds:.1f} % of one core ({sum(map(len, trees.values()))} processes)")
    finally:
        for service in reversed(region.services()):
            service.stop()
        for component in reversed(region.infra()):
            component.stop()
        region.global_primary().stop()


if __name__ == "__main__":
    main()
