"""Migration stage: `add-asset-index-v3` blue/green on demo data while a writer keeps writing (ig-migrate: gates,
backfill, shadow read, cutover, ACA), then a validated backout rehearsal (a partial backout of batch 1: counts and
checksums equal, green keeps serving), then a right-to-be-forgotten erasure of one demo data subject through the
versioned view, proven absent from blue and green."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import asyncpg
from ig_migration.workload import Writer, create_assets

from ig_release.context import ReleaseContext, StageFailed
from ig_release.databases import recreate_for_service
from ig_release.process import console_script, run_logged
from ig_release.settings import REPO

CHANGE = "add-asset-index-v3"
PLAN = REPO / "services" / "migration" / "plans" / f"{CHANGE}.yaml"
ERASED_SUBJECT = "owner-13"  # the demo data subject whose erasure request the release executes
EXIT_BACKED_OUT = 3


def last_json(stdout: str) -> dict[str, Any]:
    return json.loads(stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


async def run_under_writes(ctx: ReleaseContext, dsn: str, env: dict[str, str], log: Path) -> dict[str, Any]:
    writer = Writer(dsn)
    writing = asyncio.create_task(writer.run())
    try:
        done = await asyncio.to_thread(run_logged, [console_script("ig-migrate"), "run", "--plan", str(PLAN)], log,
                                       env=env, ok=(0, EXIT_BACKED_OUT), what="ig-migrate run", timeout=900)
    finally:
        writer.stop.set()
        await writing
    outcome = last_json(done.stdout)
    if done.returncode == EXIT_BACKED_OUT:
        raise StageFailed(f"ACA scored {outcome['aca_score']} < 0.9: the change was backed out ({outcome['detail']})",
                          log)
    if writer.errors:
        raise StageFailed(f"the writer saw {writer.errors} errors during the migration: {writer.last_error}", log)
    return {**outcome, "writes_during_run": writer.writes}


async def erase_subject(dsn: str, out: Path) -> Path:
    conn = await asyncpg.connect(dsn)
    try:
        count = "SELECT count(*) FROM {} WHERE owner = $1"
        before = {t: int(await conn.fetchval(count.format(t), ERASED_SUBJECT))
                  for t in ("public.assets", "public.assets_v3")}
        started = time.time()
        status = await conn.execute("DELETE FROM app.assets WHERE owner = $1", ERASED_SUBJECT)
        after = {t: int(await conn.fetchval(count.format(t), ERASED_SUBJECT))
                 for t in ("public.assets", "public.assets_v3")}
    finally:
        await conn.close()
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


def run(ctx: ReleaseContext) -> str:
    out = ctx.stage_dir("migration")
    log = ctx.logs / "migration.log"
    # ig-migrate and the plan's SQL run as the migration roles (the runtime role owns the target schemas), never as
    # the superuser; the demo data is made by the same role.
    roles = asyncio.run(recreate_for_service(ctx.endpoints, "ig_release_assets", "migration"))
    dsn = roles["IG_DATABASE_URL"]

    async def seed() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await create_assets(conn, ctx.profile.migration_rows)
        finally:
            await conn.close()

    asyncio.run(seed())
    env = {**roles, "IG_KAFKA_BOOTSTRAP": ctx.endpoints.kafka_bootstrap,
           "IG_BURN_GRPC": ctx.shared.get("burn_grpc", ctx.endpoints.burn_grpc),
           "IG_PROMETHEUS_URL": ctx.endpoints.prometheus_url, "IG_MIGRATION_ARTIFACTS_DIR": str(out)}
    run_logged([console_script("ig-migrate"), "validate", str(PLAN)], log, env=env, what="ig-migrate validate")
    outcome = asyncio.run(run_under_writes(ctx, dsn, env, log))
    if outcome["phase"] != "completed":
        raise StageFailed(f"ig-migrate stopped at {outcome['phase']} ({outcome['state']}): {outcome['detail']}", log)
    rehearsal = last_json(run_logged([console_script("ig-migrate"), "backout", CHANGE, "--batch", "1"], log, env=env,
                                     what="ig-migrate backout --batch 1 (rehearsal)").stdout)
    rehearsal_file = out / "backout-rehearsal.json"
    rehearsal_file.write_text(json.dumps(rehearsal, indent=2, default=str) + "\n")
    report = Path(outcome["report"])
    ctx.add_evidence("migration-timeline", report)
    ctx.add_evidence("migration-timeline", report.with_suffix(".md"))
    ctx.add_evidence("aca-report", rehearsal_file)
    aca = json.loads(report.read_text())["aca"]
    aca_file = out / "aca-report.json"
    aca_file.write_text(json.dumps({"change": CHANGE, **aca}, indent=2) + "\n")
    ctx.add_evidence("aca-report", aca_file)
    ctx.add_evidence("rtbf-log", asyncio.run(erase_subject(dsn, out)))
    ctx.summary["migration demo database"] = dsn
    return (f"{CHANGE} completed on {ctx.profile.migration_rows} rows under {outcome['writes_during_run']} writes; "
            f"ACA {outcome['aca_score']:.2f}; backout rehearsal (batch 1) validated; {ERASED_SUBJECT} erased")
