"""ACA metrics of source `prometheus` read from a real Prometheus (a private one scraping itself)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from ig_infra.components.prometheus import PrivatePrometheus
from ig_infra.process import free_port
from ig_migration.adapters.prometheus import instant_value
from ig_migration.domain.aca import Verdict, judge_metric
from ig_migration.domain.plan import Aca, AcaMetric
from ig_migration.orchestrator.canary import sample_windows

pytestmark = pytest.mark.integration



@pytest.fixture
def prometheus(infra: object, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    config = (f"global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n"
              f"scrape_configs:\n  - job_name: self\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n")
    with PrivatePrometheus(infra.paths.cache, tmp_path / "prometheus", config, port) as running:  # type: ignore[attr-defined]
        yield running.url


async def test_prometheus_windows_feed_the_judge(prometheus: str) -> None:
    for _ in range(60):  # the first scrape lands about a second after start
        try:
            if await instant_value(prometheus, 'up{job="self"}') == 1.0:
                break
        except LookupError:
            pass
        await asyncio.sleep(0.5)
    up = AcaMetric(name="self_up", source="prometheus", query='up{job="self"}', direction="decrease", critical=True)
    missing = AcaMetric(name="missing", source="prometheus", query='no_such_series{job="self"}')
    aca = Aca(windows=3, window_seconds=0.2, metrics=[up, missing])

    found, problems = await sample_windows(None, aca, prometheus)  # type: ignore[arg-type]  # no SQL metric here

    assert found["self_up"] == [1.0, 1.0, 1.0]
    assert "no series" in problems["missing"] and found["missing"] == []
    assert judge_metric(up, found["self_up"], found["self_up"], 0.95).verdict is Verdict.PASS
    assert judge_metric(missing, [], found["missing"], 0.95).verdict is Verdict.NODATA
