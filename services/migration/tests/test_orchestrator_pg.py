"""The orchestrator on the real PostgreSQL: gates, a failing green step, the advisory lock, partial backout."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import asyncpg
import pytest
from ig_migration.domain.phases import Phase
from ig_migration.orchestrator import commands
from ig_migration.orchestrator.runner import Orchestrator
from ig_migration.store import LockHeld, state, target
from ig_migration.store.target import Names
from ig_migration.workload import create_assets

from .helpers import CLI, cli_env, migrator_dsn, plan_yaml, settings, triggers_on

pytestmark = pytest.mark.integration
CHANGE = "add-asset-index-v3"


async def prepared(dsn: str, rows: int) -> asyncpg.Connection:
    from ig_common.db import create_pool, prepare_service_schema
    from ig_migration.store import MIGRATIONS, SCHEMA

    pool = await create_pool(dsn, max_size=1)
    await prepare_service_schema(pool, SCHEMA, MIGRATIONS, migrator_dsn(dsn))
    await pool.close()
    conn = await asyncpg.connect(dsn)
    await create_assets(conn, rows)
    return conn


async def test_gates_report_measured_against_limit_and_block_the_run(fresh_dsn: str, tmp_path: Path) -> None:
    conn = await prepared(fresh_dsn, 2000)
    await commands.submit(conn, plan_yaml())
    passed, gates = await commands.preflight(conn, CHANGE, settings(fresh_dsn, tmp_path, slo_headroom=0.1))
    slo = next(g for g in gates if g.gate == "slo-headroom")
    assert not passed and (slo.measured, slo.limit, slo.passed) == (0.1, 0.2, False)
    assert "IG_SLO_HEADROOM" in slo.detail and "IG_BURN_GRPC unset" in slo.detail
    assert {g.gate for g in gates} >= {"load.active-backends", "load.lock-waits", "load.replication-lag-seconds",
                                       "disk-space"}
    assert all(g.passed for g in gates if g.gate != "slo-headroom")

    # An unreachable BurnService is no evidence of headroom: fail closed and say why.
    _, gates = await commands.preflight(conn, CHANGE, settings(fresh_dsn, tmp_path, burn_grpc="127.0.0.1:9"))
    slo = next(g for g in gates if g.gate == "slo-headroom")
    assert not slo.passed and "failing closed" in slo.detail

    cli = await asyncio.to_thread(subprocess.run, [*CLI, "preflight", CHANGE],
                                  env=cli_env(fresh_dsn, tmp_path, IG_SLO_HEADROOM="0.1"), capture_output=True,
                                  text=True, timeout=120, check=False)
    assert cli.returncode == 1, cli.stderr
    assert "slo-headroom: FAIL (measured 0.1, limit >= 0.2)" in cli.stdout and "preflight: BLOCKED" in cli.stdout

    outcome = await Orchestrator(fresh_dsn, settings(fresh_dsn, tmp_path, slo_headroom=0.1)).run(CHANGE)
    assert outcome.state == "failed" and "slo-headroom" in outcome.detail
    assert not await target.table_exists(conn, "public.assets_v3")
    await conn.close()


async def test_a_green_step_failing_halfway_leaves_blue_serving(fresh_dsn: str, tmp_path: Path) -> None:
    conn = await prepared(fresh_dsn, 3000)
    broken = plan_yaml(**{"green.steps.1.sql": "CREATE INDEX CONCURRENTLY IF NOT EXISTS v3 ON {green} (no_such_col)"})
    await commands.submit(conn, broken)
    outcome = await Orchestrator(fresh_dsn, settings(fresh_dsn, tmp_path)).run(CHANGE)

    assert outcome.phase is Phase.FAILED and "no_such_col" in outcome.detail and "blue keeps serving" in outcome.detail
    assert await target.view_target(conn, "app.assets") == "assets"  # the view still reads blue
    assert not await target.table_exists(conn, "public.assets_v3")  # the half-built green is gone
    assert await triggers_on(conn, "public.assets") == []
    await conn.execute("INSERT INTO app.assets (tenant, owner, kind, name) VALUES ('t', 'o', 'doc', 'still works')")
    assert await conn.fetchval("SELECT count(*) FROM app.assets") == 3001
    report = (tmp_path / f"{CHANGE}.json").read_text()
    assert '"serving": "blue"' in report
    await conn.close()


async def test_two_orchestrators_one_wins_and_the_other_names_the_holder(fresh_dsn: str, tmp_path: Path) -> None:
    conn = await prepared(fresh_dsn, 1000)
    await commands.submit(conn, plan_yaml())
    holder = await asyncpg.connect(fresh_dsn)
    await state.try_lock(holder, CHANGE)
    holder_pid = await holder.fetchval("SELECT pg_backend_pid()")
    try:
        with pytest.raises(LockHeld, match=rf"ig-migrate@.*:\d+ \(PostgreSQL backend pid {holder_pid}"):
            await Orchestrator(fresh_dsn, settings(fresh_dsn, tmp_path)).run(CHANGE)
        result = await asyncio.to_thread(subprocess.run, [*CLI, "run", CHANGE], env=cli_env(fresh_dsn, tmp_path),
                                         capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 4, result.stderr
        assert f"backend pid {holder_pid}" in result.stderr and "is being run by ig-migrate@" in result.stderr
        assert (await state.load_change(conn, CHANGE)).phase is Phase.SUBMITTED  # type: ignore[union-attr]
    finally:
        await holder.close()
    # Once the holder is gone the next orchestrator gets the change.
    outcome = await Orchestrator(fresh_dsn, settings(fresh_dsn, tmp_path)).run(CHANGE, until=Phase.DUAL_WRITE)
    assert outcome.phase is Phase.DUAL_WRITE and outcome.state == "paused"
    await conn.close()


async def test_partial_backout_restores_chosen_batches_from_blue(fresh_dsn: str, tmp_path: Path) -> None:
    conn = await prepared(fresh_dsn, 10_000)
    await commands.submit(conn, plan_yaml(**{"batch.size": 2000}))
    outcome = await Orchestrator(fresh_dsn, settings(fresh_dsn, tmp_path)).run(CHANGE, until=Phase.SHADOW_READ)
    assert outcome.phase is Phase.SHADOW_READ, outcome.detail
    (_, lo, hi), = await state.batch_ranges(conn, CHANGE, [2])
    # Green goes wrong for some entities of batch 2 (a bad transform, a manual fix gone astray...).
    await conn.execute("UPDATE public.assets_v3 SET name = 'corrupted' WHERE id > $1 AND id <= $1 + 50", lo)
    await conn.execute("DELETE FROM public.assets_v3 WHERE id = $1", hi)
    names = Names.of(await commands.load_plan(conn, CHANGE))
    columns = await target.columns_of(conn, "public.assets")
    blue, green = await target.fingerprints(conn, [names.blue, names.green], columns, "id", (lo, hi))
    assert blue != green

    result = await commands.backout(fresh_dsn, CHANGE, [2], settings(fresh_dsn, tmp_path))

    assert result["validated"] and result["kind"] == "partial"
    (batch,) = result["batches"]
    assert batch["blue_rows"] == batch["green_rows"] == 2000 and batch["blue_checksum"] == batch["green_checksum"]
    blue_all, green_all = await target.fingerprints(conn, [names.blue, names.green], columns, "id")
    assert blue_all == green_all
    with pytest.raises(LookupError, match=r"no batches \[99\]"):
        await commands.backout(fresh_dsn, CHANGE, [99], settings(fresh_dsn, tmp_path))
    await conn.close()


async def test_contract_drops_blue_only_after_the_grace_period(fresh_dsn: str, tmp_path: Path) -> None:
    conn = await prepared(fresh_dsn, 3000)
    probe_only = plan_yaml(**{
        "aca.windows": 3, "aca.window_seconds": 0.1, "aca.probe_samples": 5,
        "aca.metrics": [{"name": "owner_lookup_ms", "source": "probe", "tolerance": 5.0, "floor": 50.0,
                         "query": "SELECT id FROM {table} WHERE owner = 'owner-7' LIMIT 20"}],
        "contract.drop_blue": True, "contract.grace_seconds": 6})
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(probe_only)
    submitted = await asyncio.to_thread(subprocess.run, [*CLI, "plan", str(plan_file)],
                                        env=cli_env(fresh_dsn, tmp_path), capture_output=True, text=True,
                                        timeout=120, check=False)
    assert submitted.returncode == 0, submitted.stderr
    assert f"submitted {CHANGE}" in submitted.stdout and "  - contract" in submitted.stdout
    first = await Orchestrator(fresh_dsn, settings(fresh_dsn, tmp_path)).run(CHANGE)
    assert (first.phase, first.state) == (Phase.VERIFY, "paused") and "grace period" in first.detail
    assert await target.table_exists(conn, "public.assets")
    status = await asyncio.to_thread(subprocess.run, [*CLI, "status", CHANGE], env=cli_env(fresh_dsn, tmp_path),
                                     capture_output=True, text=True, timeout=120, check=False)
    assert '"phase": "verify"' in status.stdout and '"state": "paused"' in status.stdout, status.stderr

    await asyncio.sleep(6)
    second = await Orchestrator(fresh_dsn, settings(fresh_dsn, tmp_path)).run(CHANGE)
    assert (second.phase, second.state) == (Phase.COMPLETED, "completed"), second.detail
    assert not await target.table_exists(conn, "public.assets")
    assert await target.view_target(conn, "app.assets") == "assets_v3"
    assert await triggers_on(conn, "public.assets_v3") == []
    assert await conn.fetchval("SELECT count(*) FROM app.assets") == 3000
    # The key sequence moved to green with the drop, so new rows still get keys.
    await conn.execute("INSERT INTO app.assets (tenant, owner, kind, name) VALUES ('t', 'o', 'doc', 'after')")
    with pytest.raises(commands.ChangeConflict, match="contracted"):
        await commands.backout(fresh_dsn, CHANGE, [], settings(fresh_dsn, tmp_path))
    await conn.close()


async def test_backfill_waits_while_lock_waits_exceed_the_throttle(fresh_dsn: str, tmp_path: Path) -> None:
    conn = await prepared(fresh_dsn, 3000)
    await commands.submit(conn, plan_yaml(**{"batch.size": 500, "throttle.max_lock_waits": 0,
                                             "throttle.pause_seconds": 0.2}))
    await Orchestrator(fresh_dsn, settings(fresh_dsn, tmp_path)).run(CHANGE, until=Phase.DUAL_WRITE)
    # A lock queue on the server: one session holds a lock, another waits for it.
    await conn.execute("CREATE TABLE contended (x int)")
    holder, waiter = await asyncpg.connect(fresh_dsn), await asyncpg.connect(fresh_dsn)
    holding = holder.transaction()
    await holding.start()
    await holder.execute("LOCK TABLE contended IN ACCESS EXCLUSIVE MODE")
    waiting = asyncio.create_task(waiter.execute("BEGIN; LOCK TABLE contended IN ACCESS EXCLUSIVE MODE; COMMIT"))
    run = asyncio.create_task(Orchestrator(fresh_dsn, settings(fresh_dsn, tmp_path)).run(CHANGE, Phase.BACKFILL))
    await asyncio.sleep(2.0)
    batches_while_contended = await conn.fetchval("SELECT coalesce(max(batches), 0) FROM migration.checkpoints")
    await holding.rollback()
    await waiting
    outcome = await asyncio.wait_for(run, timeout=300)
    await holder.close()
    await waiter.close()

    assert outcome.phase is Phase.BACKFILL, outcome.detail
    assert batches_while_contended == 0
    backfill = (await state.load_results(conn, CHANGE))["backfill"]
    assert backfill["throttled_seconds"] >= 1.0 and backfill["rows"] == 3000
    await conn.close()
