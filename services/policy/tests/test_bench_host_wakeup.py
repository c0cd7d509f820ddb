"""The benchmark's wake-up probe (bench/host_wakeup.py) times real round trips between two processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HOST_WAKEUP = Path(__file__).parents[1] / "bench" / "host_wakeup.py"


def test_the_probe_reports_ordered_percentiles_for_each_cpu_placement() -> None:
    out = subprocess.run([sys.executable, str(HOST_WAKEUP), "50"], capture_output=True, text=True, check=True,
                         timeout=60).stdout
    figures = json.loads(out)
    expected = {"same_cpu", "cross_cpu"} if len(os.sched_getaffinity(0)) > 1 else {"same_cpu"}
    assert set(figures) == expected
    for placement in figures.values():
        assert 0 < placement["p50_us"] <= placement["p95_us"] <= placement["p99_us"]
