"""make bench-migration: backfill rows/s on IG_BENCH_ROWS (default 1,000,000) `assets` rows without and with a
concurrent write load, against a plain INSERT ... SELECT copy into an identically indexed table in the same run;
cutover lock time p99 over repeated switches under load; shadow-read entities/s. Prints and writes JSON."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from ig_common.db import create_pool, prepare_service_schema
from ig_migration.domain.phases import Phase
from ig_migration.orchestrator import commands
from ig_migration.orchestrator.runner import Orchestrator
from ig_migration.planfile import parse_plan
from ig_migration.settings import Settings
from ig_migration.store import MIGRATIONS, SCHEMA, state, target
from ig_migration.store.target import Names
from ig_migration.workload import Writer, create_assets

PLAN = Path(__file__).parents[1] / "plans" / "add-asset-index-v3.yaml"
ROWS = int(os.environ.get("IG_BENCH_ROWS", "1000000"))
BATCH = int(os.environ.get("IG_BENCH_BATCH", "10000"))
SWITCHES = int(os.environ.get("IG_BENCH_SWITCHES", "60"))
WRITERS = int(os.environ.get("IG_BENCH_WRITERS", "2"))


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def plain_copy(conn: asyncpg.Connection) -> dict[str, float]:
    """The yardstick: one INSERT ... SELECT into a table with the same indexes green gets."""
    await conn.execute("CREATE TABLE public.assets_plain (LIKE public.assets INCLUDING ALL)")
    await conn.execute("CREATE INDEX assets_plain_lookup ON public.assets_plain (tenant, owner, kind, updated_at DESC)")
    started = time.perf_counter()
    status = await conn.execute("INSERT INTO public.assets_plain SELECT * FROM public.assets")
    seconds = time.perf_counter() - started
    rows = int(status.split()[-1])
    await conn.execute("DROP TABLE public.assets_plain")
    return {"rows": rows, "seconds": round(seconds, 3), "rows_per_second": round(rows / seconds, 1)}


async def backfill_once(dsn: str, settings: Settings, plan_text: str, until: Phase) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        await commands.submit(conn, plan_text)
    finally:
        await conn.close()
    outcome = await Orchestrator(dsn, settings).run("add-asset-index-v3", until)
    if outcome.phase is not until:
        raise RuntimeError(f"run stopped at {outcome.phase.value}: {outcome.detail}")
    conn = await asyncpg.connect(dsn)
    try:
        return await state.load_results(conn, "add-asset-index-v3")
    finally:
        await conn.close()


async def cutover_lock_times(dsn: str, plan_text: str) -> list[target.SwitchTiming]:
    """Switch the view green <-> blue repeatedly while the writers run; each switch is a real cutover."""
    plan = parse_plan(plan_text)
    names = Names.of(plan)
    conn = await asyncpg.connect(dsn)
    try:
        columns = await target.columns_of(conn, names.blue)
        await target.enable_reverse(conn, names, plan.cutover.lock_timeout_ms)
        timings = []
        for i in range(SWITCHES):
            timing = await target.switch_view(conn, names, columns, to_green=i % 2 == 0,
                                              lock_timeout_ms=plan.cutover.lock_timeout_ms,
                                              attempts=plan.cutover.attempts)
            timings.append(timing)
            await asyncio.sleep(0.05)
        if SWITCHES % 2:
            await target.switch_view(conn, names, columns, to_green=False, lock_timeout_ms=2000, attempts=5)
        return timings
    finally:
        await conn.close()


async def main() -> dict[str, Any]:
    from ig_infra.components import Postgres
    from ig_infra.paths import Paths

    postgres = Postgres(Paths.from_environment())
    name = f"ig_mig_bench_{uuid.uuid4().hex[:6]}"
    # Laid out like the suite's: the orchestrator and the plan's SQL run as the migration runtime role (which owns
    # the target schemas), its own schema migrated by the migration migrator role; never the superuser.
    postgres.provision(name)
    dsn = postgres.service_dsn("migration", name)
    artifacts = Path(os.environ.get("ARTIFACTS", "artifacts"))
    settings = Settings(database_url=dsn, kafka_bootstrap=os.environ.get("IG_KAFKA_BOOTSTRAP", "127.0.0.1:59092"),
                        slo_headroom=1.0, migration_artifacts_dir=artifacts / "migration" / "bench")
    plan_text = PLAN.read_text().replace("size: 5000", f"size: {BATCH}")
    try:
        pool = await create_pool(dsn, max_size=2)
        await prepare_service_schema(pool, SCHEMA, MIGRATIONS, postgres.service_dsn("migration", name, migrator=True))
        await pool.close()
        conn = await asyncpg.connect(dsn)
        started = time.perf_counter()
        await create_assets(conn, ROWS)
        print(f"seeded {ROWS} rows in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        plain = await plain_copy(conn)
        print(f"plain INSERT ... SELECT: {plain}", file=sys.stderr)

        quiet = (await backfill_once(dsn, settings, plan_text, Phase.BACKFILL))["backfill"]
        print(f"backfill without writes: {quiet}", file=sys.stderr)
        await commands.backout(dsn, "add-asset-index-v3", [], settings)

        writers = [Writer(dsn, pause_seconds=0.001, seed=i) for i in range(WRITERS)]
        tasks = [asyncio.create_task(w.run()) for w in writers]
        load_started = time.perf_counter()
        busy = await backfill_once(dsn, settings, plan_text, Phase.SHADOW_READ)
        load_seconds = time.perf_counter() - load_started
        writes_during_backfill = sum(w.writes for w in writers)
        print(f"backfill under load: {busy['backfill']}", file=sys.stderr)
        switches = await cutover_lock_times(dsn, plan_text)
        for w in writers:
            w.stop.set()
        await asyncio.gather(*tasks)
        await commands.backout(dsn, "add-asset-index-v3", [], settings)
        await conn.close()
    finally:
        postgres.admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', transaction=False)

    under_load = busy["backfill"]["rows_per_second"]
    totals = [s.total_ms for s in switches]
    shadow = busy["shadow-read"]
    return {
        "rows": ROWS, "batch_size": BATCH,
        "plain_insert_select": plain,
        "backfill_without_writes": {"rows_per_second": quiet["rows_per_second"],
                                    "seconds": quiet["active_seconds"], "rows": quiet["rows"]},
        "backfill_with_writes": {"rows_per_second": under_load, "seconds": busy["backfill"]["active_seconds"],
                                 "rows": busy["backfill"]["rows"], "writers": WRITERS,
                                 "writes_per_second": round(writes_during_backfill / load_seconds, 1),
                                 "throttled_seconds": busy["backfill"]["throttled_seconds"]},
        "backfill_under_load_vs_plain": round(under_load / plain["rows_per_second"], 3),
        "goal_under_load_vs_plain": 0.5,
        "cutover_lock_ms": {"switches": len(switches), "p50": round(statistics.median(totals), 2),
                            "p99": round(percentile(totals, 0.99), 2), "max": round(max(totals), 2),
                            "hold_p99": round(percentile([s.lock_hold_ms for s in switches], 0.99), 2),
                            "wait_p99": round(percentile([s.lock_wait_ms for s in switches], 0.99), 2)},
        "goal_cutover_p99_ms": 100,
        "shadow_read": {"entities": shadow["compared"], "seconds": shadow["seconds"],
                        "entities_per_second": shadow["entities_per_second"], "mismatches": shadow["mismatches"]},
        "host_load_average": os.getloadavg(),
    }


if __name__ == "__main__":
    result = asyncio.run(main())
    out = Path(os.environ.get("ARTIFACTS", "artifacts")) / "bench" / "migration.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(f"wrote {out}")
