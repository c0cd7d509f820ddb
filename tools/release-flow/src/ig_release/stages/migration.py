"""Migration stage: `add-asset-index-v3` blue/green on demo data through the suite's MigrationService (gRPC, as the
`release` workload: Submit -> Run, the Status stream followed to the end, the run's events read on ig.migration.v1)
while a writer keeps writing; then a backout rehearsal with something to undo: green is made to diverge from blue in
batch 1 (acknowledged writes lost on green), a partial backout of batch 1 restores it, and the writer's own record
of acknowledged writes is checked against the table; then a right-to-be-forgotten erasure of one demo data subject
through the versioned view, proven absent from blue and green."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import grpc
from ig_migration.store import target
from ig_migration.workload import Writer, create_assets, losses

from ig_release.context import ReleaseContext, StageFailed
from ig_release.migration_service import (
    ServiceRun,
    migration_client,
    rpc_failure,
    signed_by_local_approver,
)
from ig_release.settings import REPO

CHANGE = "add-asset-index-v3"
PLAN = REPO / "services" / "migration" / "plans" / f"{CHANGE}.yaml"
ERASED_SUBJECT = "owner-13"  # the demo data subject whose erasure request the release executes
DEMO_TABLES = ("public.assets", "public.assets_v3")
# Phases after which a new Submit starts the change afresh with nothing of an earlier run left in the database.
RESTARTABLE = ("submitted", "preflight", "backed-out", "failed")
# How many rows of batch 1 green loses or garbles before the rehearsal (keys the writer has acknowledged writes of).
DIVERGED_ROWS = 20


def demo_dsn(ctx: ReleaseContext) -> str:
    """The migration runtime role in the database the suite's migration service migrates (IG_DATABASE_URL's: the
    service keeps its state there, pgroll-style); the demo data is made and written by that role, never the
    superuser."""
    from ig_infra.components.postgres import service_env_for

    return str(service_env_for(ctx.endpoints.database_url, "migration")["IG_DATABASE_URL"])


@asynccontextmanager
async def _connection(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(dsn)
    try:
        yield conn
    finally:
        await conn.close()


async def seed(dsn: str, rows: int) -> None:
    async with _connection(dsn) as conn:
        await conn.execute("DROP VIEW IF EXISTS app.assets")
        await conn.execute(f"DROP TABLE IF EXISTS {', '.join(DEMO_TABLES)} CASCADE")
        await create_assets(conn, rows)


async def diverge_green(dsn: str, batch_lo: int, batch_hi: int, writer: Writer) -> dict[str, Any]:
    """Green loses acknowledged writes in batch 1 (keys (lo, hi]): half of the chosen rows deleted, half given
    another name, on green only (the orchestrator's dual-write switched off for this transaction), as a faulty
    green-side job would. Chosen among rows the writer has an acknowledged insert or update of, so that the check
    against its record sees the loss."""
    candidates = sorted(k for k, name in list(writer.acknowledged.items()) if name is not None
                        and batch_lo < k <= batch_hi)
    async with _connection(dsn) as conn, conn.transaction():
        await conn.execute(f"SELECT set_config('{target.SUPPRESS}', 'on', true)")
        present = [int(r["id"]) for r in await conn.fetch(
            "SELECT id FROM public.assets_v3 WHERE id = ANY($1::bigint[]) ORDER BY id", candidates)]
        chosen = present[:DIVERGED_ROWS]
        if not chosen:
            raise StageFailed(f"no row of batch 1 ({batch_lo}, {batch_hi}] has an acknowledged write to lose")
        deleted, garbled = chosen[::2], chosen[1::2]
        await conn.execute("DELETE FROM public.assets_v3 WHERE id = ANY($1::bigint[])", deleted)
        await conn.execute("UPDATE public.assets_v3 SET name = 'diverged on green' WHERE id = ANY($1::bigint[])",
                           garbled)
    return {"batch": 1, "keys": [batch_lo, batch_hi], "deleted_on_green": deleted, "garbled_on_green": garbled}


async def serving_names(dsn: str, keys: list[int] | None = None) -> dict[int, str]:
    async with _connection(dsn) as conn:
        if keys is None:
            rows = await conn.fetch("SELECT id, name FROM app.assets")
        else:
            rows = await conn.fetch("SELECT id, name FROM app.assets WHERE id = ANY($1::bigint[])", keys)
    return {int(r["id"]): str(r["name"]) for r in rows}


async def batch_range(dsn: str, batch: int) -> tuple[int, int]:
    async with _connection(dsn) as conn:
        row = await conn.fetchrow("SELECT lo_key, hi_key FROM migration.batches WHERE change = $1 AND batch_no = $2",
                                  CHANGE, batch)
    if row is None:
        raise StageFailed(f"the service recorded no batch {batch} of {CHANGE}")
    return int(row["lo_key"]), int(row["hi_key"])


async def view_target(dsn: str) -> str:
    async with _connection(dsn) as conn:
        return await target.view_target(conn, "app.assets")


async def migrate(ctx: ReleaseContext, dsn: str, out: Path, log: Path) -> dict[str, Any]:
    """The whole exchange with the service, under one live writer; returns what the evidence needs."""
    plan_yaml = PLAN.read_text()
    address = ctx.endpoints.migration_grpc
    async with migration_client(address) as client:
        try:
            previous = await client.known(CHANGE)
            if previous is not None and previous.phase not in RESTARTABLE:
                # An earlier flow left the change applied (or a killed one left it half way): undo it through the
                # service, so that triggers and green go before the demo data is made again.
                await client.backout(CHANGE)
            await seed(dsn, ctx.profile.migration_rows)
            writer = Writer(dsn)
            writing = asyncio.create_task(writer.run())
            try:
                run = await client.submit_and_run(plan_yaml, signed_by_local_approver(plan_yaml),
                                                  ctx.endpoints.kafka_bootstrap)
                check_run(run, log)
                if await view_target(dsn) != "assets_v3":
                    raise StageFailed(f"{address} completed {CHANGE}, but app.assets in {ctx.endpoints.database_url}"
                                      f" does not serve assets_v3: the service migrates another database", log)
                lo, hi = await batch_range(dsn, 1)
                divergence = await diverge_green(dsn, lo, hi, writer)
                diverged = divergence["deleted_on_green"] + divergence["garbled_on_green"]
                seen = await serving_names(dsn, diverged)
                lost_before = [k for k in diverged if seen.get(k) != writer.acknowledged.get(k)]
                rehearsal = await client.backout(CHANGE, [1])
            finally:
                writer.stop.set()
                await writing
        except grpc.aio.AioRpcError as error:
            raise rpc_failure(error, f"at {address}", log) from error
    lost_after = losses(writer.acknowledged, await serving_names(dsn))
    return {"run": run, "writer": writer, "divergence": divergence, "lost_before": lost_before,
            "rehearsal": rehearsal, "lost_after": lost_after}


def check_run(run: ServiceRun, log: Path) -> None:
    result = run.result
    if result.backed_out:
        raise StageFailed(f"ACA scored {result.aca_score} < 0.9: the service backed the change out ({result.detail})",
                          log)
    if result.phase != "completed":
        raise StageFailed(f"the service stopped {CHANGE} at {result.phase}: {result.detail}", log)
    if not run.events or any(e["run_id"] != result.run_id for e in run.events):
        raise StageFailed(f"no ig.migration.v1 event of run {result.run_id} arrived", log)
    if run.events[-1]["to_phase"] != "completed":
        raise StageFailed(f"the last event of run {result.run_id} seen on ig.migration.v1 is "
                          f"{run.events[-1]['to_phase']}, not completed", log)


async def erase_subject(dsn: str, out: Path) -> Path:
    async with _connection(dsn) as conn:
        count = "SELECT count(*) FROM {} WHERE owner = $1"
        before = {t: int(await conn.fetchval(count.format(t), ERASED_SUBJECT)) for t in DEMO_TABLES}
        started = time.time()
        status = await conn.execute("DELETE FROM app.assets WHERE owner = $1", ERASED_SUBJECT)
        after = {t: int(await conn.fetchval(count.format(t), ERASED_SUBJECT)) for t in DEMO_TABLES}
    if any(after.values()):
        raise StageFailed(f"erasure of {ERASED_SUBJECT} left rows behind: {after}")
    log = out / "rtbf-log.json"
    log.write_text(json.dumps({
        "request": {"subject": ERASED_SUBJECT, "scope": "assets (demo data)", "received_utc":
                    time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started))},
        "executed": {"statement": "DELETE FROM app.assets WHERE owner = $1", "result": status,
                     "seconds": round(time.time() - started, 3)},
        "rows_before": before, "rows_after": after,
        "note": "deleted through the versioned view; the migration's dual-write removes the subject from blue too",
    }, indent=2) + "\n")
    return log


def write_rehearsal(out: Path, report: dict[str, Any], outcome: dict[str, Any]) -> Path:
    rehearsal, writer = outcome["rehearsal"], outcome["writer"]
    partial = report.get("partial_backout") or {}
    body = {
        "kind": "partial", "batches": [1], "validated": rehearsal.validated, "detail": rehearsal.detail,
        "blue_rows": rehearsal.blue_rows, "green_rows": rehearsal.green_rows,
        "blue_checksum": rehearsal.blue_checksum, "green_checksum": rehearsal.green_checksum,
        "per_batch": partial.get("batches", []),
        "divergence": outcome["divergence"],
        "acknowledged_writes": {
            "record": "the writer's own: every insert, update and delete the database acknowledged, last per row",
            "rows_in_record": len(writer.acknowledged), "writes": writer.writes, "writer_errors": writer.errors,
            "lost_on_diverged_rows_before_rehearsal": outcome["lost_before"],
            "lost_after_rehearsal": [loss.__dict__ for loss in outcome["lost_after"]]},
    }
    path = out / "backout-rehearsal.json"
    path.write_text(json.dumps(body, indent=2, default=str) + "\n")
    return path


def run(ctx: ReleaseContext) -> str:
    out = ctx.stage_dir("migration")
    log = ctx.logs / "migration.log"
    dsn = demo_dsn(ctx)
    outcome = asyncio.run(migrate(ctx, dsn, out, log))
    service_run: ServiceRun = outcome["run"]
    writer: Writer = outcome["writer"]
    evidence_run = out / "migration-service-run.json"
    evidence_run.write_text(json.dumps(service_run.as_json(ctx.endpoints.migration_grpc), indent=2) + "\n")
    with log.open("a", encoding="utf-8") as text:
        text.write(f"MigrationService {ctx.endpoints.migration_grpc}: run {service_run.result.run_id}, "
                   f"{len(service_run.events)} events, states {service_run.as_json('')['states_seen']}\n")
    # The service wrote its report where it runs (IG_MIGRATION_ARTIFACTS_DIR): this machine, for the local suite.
    served = Path(service_run.result.report_path)
    if not served.is_file():
        raise StageFailed(f"the service's report {served} is not readable from here", log)
    report_file = out / served.name
    shutil.copyfile(served, report_file)
    shutil.copyfile(served.with_suffix(".md"), report_file.with_suffix(".md"))
    report = json.loads(report_file.read_text())
    if writer.errors:
        raise StageFailed(f"the writer saw {writer.errors} errors during the migration: {writer.last_error}", log)
    if not outcome["lost_before"]:
        raise StageFailed("green's divergence did not show in the serving view: the rehearsal would undo nothing",
                          log)
    rehearsal_file = write_rehearsal(out, report, outcome)
    if not outcome["rehearsal"].validated:
        raise StageFailed(f"backout rehearsal (batch 1) not validated: {outcome['rehearsal'].detail}", log)
    if outcome["lost_after"]:
        raise StageFailed(f"{len(outcome['lost_after'])} acknowledged writes lost after the rehearsal "
                          f"(first: {outcome['lost_after'][0]})", log)
    ctx.add_evidence("migration-timeline", report_file)
    ctx.add_evidence("migration-timeline", report_file.with_suffix(".md"))
    ctx.add_evidence("migration-timeline", evidence_run)
    ctx.add_evidence("aca-report", rehearsal_file)
    aca_file = out / "aca-report.json"
    aca_file.write_text(json.dumps({"change": CHANGE, "run_id": service_run.result.run_id, **report["aca"]},
                                   indent=2) + "\n")
    ctx.add_evidence("aca-report", aca_file)
    ctx.add_evidence("rtbf-log", asyncio.run(erase_subject(dsn, out)))
    ctx.summary["migration demo database"] = dsn
    restored = len(outcome["divergence"]["deleted_on_green"]) + len(outcome["divergence"]["garbled_on_green"])
    return (f"{CHANGE} completed by MigrationService run {service_run.result.run_id} on "
            f"{ctx.profile.migration_rows} rows under {writer.writes} writes ({len(service_run.events)} events on "
            f"ig.migration.v1); ACA {service_run.result.aca_score:.2f}; backout rehearsal restored {restored} "
            f"diverged rows of batch 1, none of {len(writer.acknowledged)} acknowledged rows lost; "
            f"{ERASED_SUBJECT} erased")
