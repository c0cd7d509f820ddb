"""With the REAL Prometheus: a tick reads the ratios the generated recording rules record (one query), they equal
what direct queries measure, and SLOs without current rules are queried directly (never read from stale rules)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml
from ig_burn.config_loader import BurnConfig
from ig_burn.devtools.harness import free_port, prometheus_config, synthetic_slo_yaml
from ig_burn.devtools.synthetic_exporter import Workload, serve
from ig_burn.domain.burn import WindowScale
from ig_burn.domain.recording import INFO_METRIC, rule_file
from ig_burn.domain.slo import parse_slo_documents
from ig_burn.engine import BurnEngine
from ig_burn.prometheus import PrometheusClient
from ig_burn.store import MIGRATIONS, SCHEMA
from ig_common.db import prepare_schema
from ig_infra.components.prometheus import PrivatePrometheus

pytestmark = pytest.mark.integration
SCALE = WindowScale(divisor=86400, minimum_seconds=3)  # 30 d -> 30 s, as the acceptance test scales them
OTHER_SCALE = WindowScale(divisor=43200, minimum_seconds=3)


def slos(*names_and_series: tuple[str, str]) -> BurnConfig:
    found = [s for name, series in names_and_series
             for s in parse_slo_documents(synthetic_slo_yaml(name, series=series), "test")]
    return BurnConfig(tuple(found), ())


@pytest.fixture
async def prometheus(infra: Any, tmp_path: Path) -> AsyncIterator[tuple[PrivatePrometheus, str]]:
    """Three SLOs on three series: ``ruled`` has current rules, ``other-scale`` rules for another window scale,
    ``unruled`` none. 2 % errors everywhere."""
    suffix = uuid.uuid4().hex[:6]
    workload = Workload(series=3, rps=100.0, error_ratio=0.02)
    exporter = serve(workload, "127.0.0.1", free_port())
    rules = tmp_path / "rules"
    rules.mkdir()
    ruled, other = slos((f"ruled-{suffix}", "s0000")), slos((f"other-scale-{suffix}", "s0001"))
    (rules / "current.yml").write_text(yaml.safe_dump(rule_file(ruled.slos, SCALE, "1s")))
    (rules / "other.yml").write_text(yaml.safe_dump(rule_file(other.slos, OTHER_SCALE, "1s")))
    server = PrivatePrometheus(infra.paths.cache, tmp_path / "prometheus", prometheus_config(
        {"synthetic": f"127.0.0.1:{exporter.server_address[1]}"}, rules_dir=rules), free_port()).start()
    try:
        yield server, suffix
    finally:
        server.remove()
        exporter.shutdown()


async def test_ticks_read_recorded_ratios_equal_to_direct_queries(
        prometheus: tuple[PrivatePrometheus, str], database_url: str) -> None:
    server, suffix = prometheus
    names = (f"ruled-{suffix}", f"other-scale-{suffix}", f"unruled-{suffix}")
    config = slos(*zip(names, ("s0000", "s0001", "s0002"), strict=True))
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    client = PrometheusClient(server.url, timeout=10, concurrency=2)
    engines: list[BurnEngine] = []

    def engine(max_age: float | None) -> BurnEngine:
        engines.append(BurnEngine(config, client, pool, SCHEMA, scale=SCALE, batch_size=250, external_url="http://x",
                                  recording_rules_max_age=max_age))
        return engines[-1]

    try:
        await prepare_schema(pool, SCHEMA, MIGRATIONS)

        # Enough scrapes for every scaled window (the longest, 30 s, needs two samples) and rule evaluations.
        recorded_engine = engine(30.0)
        async with asyncio.timeout(90):
            while True:
                tick = await recorded_engine.tick()
                reports = recorded_engine.snapshot.reports
                if not tick.stale and all(reports[n].complete for n in names):
                    break
                await asyncio.sleep(1)
        assert (tick.recorded_slos, tick.queries) == (1, 2)  # the rules query + one direct batch for the other two
        direct_engine = engine(None)
        direct = await direct_engine.tick()
        assert (direct.recorded_slos, direct.queries) == (0, 1)
        for name in names:
            from_rules, queried = reports[name], direct_engine.snapshot.reports[name]
            # 2 % errors / 1 % budget: every window burns at 2, whichever way it was measured.
            assert from_rules.monthly_budget_consumed == pytest.approx(2.0, rel=0.02)
            assert from_rules.monthly_budget_consumed == pytest.approx(queried.monthly_budget_consumed, rel=0.02)
            assert [r.rate for r in from_rules.burn_rates] == pytest.approx([r.rate for r in queried.burn_rates],
                                                                            rel=0.02)
        info = await client.instant(INFO_METRIC, time.time())
        assert {labels["ig_slo"] for labels, _ in info} == {names[0], names[1]}  # rules exist for both ...
        # Recorded samples older than the accepted age are not read: the SLO is queried directly instead.
        # A sample is read when it is younger than the age, so a tick that lands within a millisecond of a rule
        # evaluation (1 s apart) reads it, rightly (seen once in make test, 2026-12-07): three ticks at different
        # phases of the evaluation cycle, of which at least one lands later. Without the age, all three read it.
        too_old = engine(0.001)
        late_ticks = []
        for _ in range(3):
            late_ticks.append(await too_old.tick())
            if late_ticks[-1].recorded_slos == 0:
                break
            await asyncio.sleep(0.137)
        late = late_ticks[-1]
        assert (late.recorded_slos, late.queries, late.stale) == (0, 2, False), late_ticks
        assert too_old.snapshot.reports[names[0]].complete
    finally:
        for used in engines:
            await used.close()  # gives the evaluator lock's connection back, or the pool never closes
        await client.close()
        await pool.close()
