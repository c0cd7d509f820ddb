"""Metric samples for the canary analysis: windows of workload metrics (before cutover for blue's baseline,
after it for green) and side-by-side probes of both tables."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import structlog

from ig_migration.adapters.prometheus import instant_value
from ig_migration.domain.plan import Aca, AcaMetric, MetricSource, Plan
from ig_migration.store import health
from ig_migration.store.identifiers import quote_qualified
from ig_migration.store.target import Conn

log = structlog.get_logger(__name__)
WINDOWED = (MetricSource.PG_STAT_STATEMENTS, MetricSource.ERROR_RATE, MetricSource.PROMETHEUS)
# A failed probe counts as this many milliseconds: an error is worse than any latency the canary could show.
PROBE_ERROR_MS = 60_000.0


async def _snapshot(conn: Conn, metric: AcaMetric, prometheus_url: str | None) -> tuple[float, float]:
    if metric.source is MetricSource.PG_STAT_STATEMENTS:
        ms, calls = await health.statement_totals(conn, metric.query)
        return ms, float(calls)
    if metric.source is MetricSource.ERROR_RATE:
        commits, rollbacks = await health.database_rollbacks(conn)
        return float(rollbacks), float(commits + rollbacks)
    if prometheus_url is None:
        raise LookupError("metric source prometheus needs IG_PROMETHEUS_URL")
    return await instant_value(prometheus_url, metric.query), 1.0


def _window_value(metric: AcaMetric, before: tuple[float, float], after: tuple[float, float]) -> float | None:
    if metric.source is MetricSource.PROMETHEUS:
        return after[0]
    amount, count = after[0] - before[0], after[1] - before[1]
    if count <= 0:
        return 0.0 if metric.source is MetricSource.ERROR_RATE else None
    return amount / count


async def sample_windows(conn: Conn, aca: Aca, prometheus_url: str | None) -> tuple[dict[str, list[float]],
                                                                                   dict[str, str]]:
    """``aca.windows`` windows of ``aca.window_seconds`` each; a metric without data in a window is skipped there.
    Returns samples per metric and, for metrics that could not be read at all, the reason."""
    metrics = [m for m in aca.metrics if m.source in WINDOWED]
    found: dict[str, list[float]] = {m.name: [] for m in metrics}
    problems: dict[str, str] = {}
    if not metrics:
        return found, problems
    before: dict[str, tuple[float, float]] = {}
    for metric in metrics:
        try:
            before[metric.name] = await _snapshot(conn, metric, prometheus_url)
        except (LookupError, RuntimeError, OSError, asyncpg.PostgresError) as error:
            problems[metric.name] = str(error)
    for _ in range(aca.windows):
        await asyncio.sleep(aca.window_seconds)
        for metric in metrics:
            if metric.name in problems:
                continue
            try:
                after = await _snapshot(conn, metric, prometheus_url)
            except (LookupError, RuntimeError, OSError, asyncpg.PostgresError) as error:
                problems[metric.name] = str(error)
                continue
            value = _window_value(metric, before[metric.name], after)
            if value is not None:
                found[metric.name].append(value)
            before[metric.name] = after
    return found, problems


async def probe_both(conn: Conn, plan: Plan, aca: Aca) -> dict[str, tuple[list[float], list[float]]]:
    """Each probe timed against blue (baseline) and green (canary) alternately, so both see the same load."""
    found: dict[str, tuple[list[float], list[float]]] = {}
    for metric in (m for m in aca.metrics if m.source is MetricSource.PROBE):
        baseline: list[float] = []
        canary: list[float] = []
        for _ in range(aca.probe_samples):
            for table, into in ((plan.blue.table, baseline), (plan.green.table, canary)):
                started = time.perf_counter()
                try:
                    await conn.fetch(metric.query.replace("{table}", quote_qualified(table)))
                    into.append((time.perf_counter() - started) * 1000)
                except asyncpg.PostgresError as error:
                    log.warning("probe_failed", metric=metric.name, table=table, error=str(error))
                    into.append(PROBE_ERROR_MS)
        found[metric.name] = (baseline, canary)
    return found
