"""Acceptance of the Migration Orchestrator: add-asset-index-v3 on `assets` while a writer keeps inserting,
updating and deleting. Healthy run through the gRPC service: gates pass, backfill completes, shadow read finds no
mismatch, cutover, ACA >= 0.9, report and events recorded. Regression run through the CLI: green made slower after
the baseline, ACA < 0.9, automatic backout with equal counts and checksums and the green-era writes kept in blue.
(50,000 rows here; the benchmark runs 1,000,000.)"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import grpc
import pytest
from ig.migration.v1 import migration_pb2, migration_pb2_grpc
from ig_common.grpc_client import aio_channel_as
from ig_common.tls import inherited_identity
from ig_infra.approver import approver_signing_key, ensure_approver_signing_key
from ig_infra.process import free_port
from ig_migration.domain.approval import private_key_from_pem, sign_plan
from ig_migration.store import target
from ig_migration.workload import Writer, create_assets

pytestmark = pytest.mark.e2e
ROWS = int(os.environ.get("IG_MIGRATION_E2E_ROWS", "50000"))
PLAN = Path(__file__).parents[1] / "services" / "migration" / "plans" / "add-asset-index-v3.yaml"
CHANGE = "add-asset-index-v3"
CLI = [sys.executable, "-m", "ig_migration.cli"]


@pytest.fixture
async def assets_dsn(infra: object) -> AsyncIterator[str]:
    """A fresh database laid out like the suite's, holding `assets` (ROWS rows) behind the versioned view app.assets,
    made by the migration runtime role that owns the target schemas (what the service and ig-migrate run as)."""
    admin_url = await asyncio.to_thread(infra.new_database, "ig_mig_e2e")  # type: ignore[attr-defined]
    dsn = infra.service_dsn("migration", admin_url)  # type: ignore[attr-defined]
    conn = await asyncpg.connect(dsn)
    await create_assets(conn, ROWS)
    await conn.close()
    yield dsn
    await asyncio.to_thread(infra.drop_database, admin_url)  # type: ignore[attr-defined]



def base_env(dsn: str, artifacts: Path, kafka: str) -> dict[str, str]:
    # The certificates and the authorization table: the infra fixture put where they are into this environment.
    # ``dsn`` is the migration runtime role's; its schema's owner (the migrator role) runs the service's migrations.
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "IG_DATABASE_URL": dsn,
            "IG_MIGRATION_DATABASE_URL": dsn.replace("//ig_migration@", "//ig_migration_migrator@", 1),
            "IG_KAFKA_BOOTSTRAP": kafka,
            "IG_SLO_HEADROOM": "0.8", "IG_MIGRATION_ARTIFACTS_DIR": str(artifacts), **inherited_identity()}


def approve(infra: object, plan_text: str) -> str:
    """The local suite's `approver` signs the plan (what `ig-migrate approve --key ... PLAN` prints)."""
    run_dir = infra.paths.run  # type: ignore[attr-defined]
    ensure_approver_signing_key(run_dir)
    return sign_plan(private_key_from_pem(approver_signing_key(run_dir).read_bytes()), plan_text)


@pytest.fixture
def service(infra: object, assets_dsn: str, kafka_bootstrap: str, tmp_path: Path) -> Iterator[str]:
    http_port, grpc_port = free_port(), free_port()
    approvers = ensure_approver_signing_key(infra.paths.run)  # type: ignore[attr-defined]
    env = {**base_env(assets_dsn, tmp_path, kafka_bootstrap), "IG_HTTP_PORT": str(http_port),
           "IG_GRPC_PORT": str(grpc_port), "IG_MIGRATION_APPROVERS": str(approvers)}
    process = subprocess.Popen([sys.executable, "-m", "ig_migration.app"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            if process.poll() is not None:
                pytest.fail(f"migration service exited: {process.stdout.read() if process.stdout else ''}")
            time.sleep(0.2)
    else:
        process.kill()
        pytest.fail("migration service did not become healthy")
    yield f"127.0.0.1:{grpc_port}"
    process.terminate()
    assert process.wait(timeout=30) == 0


async def test_healthy_change_through_grpc(service: str, infra: object, assets_dsn: str, tmp_path: Path) -> None:
    writer = Writer(assets_dsn)
    writing = asyncio.create_task(writer.run())
    async with aio_channel_as("operator", service) as channel:
        stub = migration_pb2_grpc.MigrationServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await stub.Submit(migration_pb2.SubmitRequest(plan_yaml=PLAN.read_text().replace("size: 5000", "size: 0")))
        assert bad.value.code() is grpc.StatusCode.INVALID_ARGUMENT and "batch.size" in (bad.value.details() or "")

        # Without an approver's signature the plan is stored but does not run.
        submitted = await stub.Submit(migration_pb2.SubmitRequest(plan_yaml=PLAN.read_text()))
        assert submitted.change == CHANGE and len(submitted.plan_sha256) == 64
        with pytest.raises(grpc.aio.AioRpcError) as unapproved:
            await stub.Run(migration_pb2.RunRequest(change=CHANGE))
        assert unapproved.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert "no signature given" in (unapproved.value.details() or "")
        await stub.Submit(migration_pb2.SubmitRequest(plan_yaml=PLAN.read_text(),
                                                      signature=approve(infra, PLAN.read_text())))
        preflight = await stub.Preflight(migration_pb2.PreflightRequest(change=CHANGE))
        assert preflight.passed, preflight
        assert {g.gate for g in preflight.gates} == {"load.active-backends", "load.lock-waits",
                                                     "load.replication-lag-seconds", "disk-space", "slo-headroom"}

        for request, field in ((migration_pb2.RunRequest(change="Bad Name"), "change:"),
                               (migration_pb2.RunRequest(change=CHANGE, until_phase="teleport"), "until_phase:")):
            with pytest.raises(grpc.aio.AioRpcError) as invalid:
                await stub.Run(request)
            assert invalid.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert (invalid.value.details() or "").startswith(field)
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await stub.Preflight(migration_pb2.PreflightRequest(change="no-such-change"))
        assert unknown.value.code() is grpc.StatusCode.NOT_FOUND

        run = asyncio.ensure_future(stub.Run(migration_pb2.RunRequest(change=CHANGE)))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            now = [u async for u in stub.Status(migration_pb2.StatusRequest(change=CHANGE))]
            if now and now[-1].state == "running":
                break
            await asyncio.sleep(0.2)
        # A second orchestrator on the same change is turned away and told who holds it.
        with pytest.raises(grpc.aio.AioRpcError) as busy:
            await stub.Run(migration_pb2.RunRequest(change=CHANGE))
        assert busy.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert "is being run by ig-migrate@" in (busy.value.details() or "")
        updates: list[migration_pb2.StatusResponse] = []
        async for update in stub.Status(migration_pb2.StatusRequest(change=CHANGE, follow=True)):
            updates.append(update)
        result = await run

        assert result.phase == "completed" and not result.backed_out, result.detail
        assert result.approved_by == "approver"
        # One id for the run: the answer, the Status stream and the report carry it.
        assert result.run_id.startswith("run_") and updates[-1].run_id == result.run_id
        assert result.aca_score >= 0.9
        assert updates[-1].state == "completed"
        # total counts the entities present when the backfill started: the seeded rows, less what the live writer
        # had deleted by then (at most every delete it has made so far), plus what it had inserted.
        present_at_least = ROWS - writer.deletes
        assert any(u.phase in ("dual-write", "backfill") and u.total >= present_at_least for u in updates), updates
        progress = [u for u in updates if u.total > 0]
        assert progress and progress[-1].total >= present_at_least and progress[-1].done >= 0.98 * progress[-1].total
        assert progress[-1].rows_per_second > 0

        report = json.loads(await asyncio.to_thread(Path(result.report_path).read_text))
        assert report["backfill"]["rows"] >= 0.98 * ROWS and report["backfill"]["rows_per_second"] > 0
        assert report["shadow_read"]["mismatches"] == 0 and report["shadow_read"]["compared"] >= present_at_least
        assert report["cutover"]["duration_ms"] > 0 and report["cutover"]["lock_hold_ms"] > 0
        assert report["aca"]["score"] >= 0.9 and len(report["aca"]["metrics"]) == 3
        assert report["error_rate"]["before"] is not None and report["error_rate"]["after"] is not None
        assert [t["to"] for t in report["timeline"]][-3:] == ["verify", "contract", "completed"]
        assert report["run_id"] == result.run_id
        assert (tmp_path / f"{CHANGE}.md").read_text().startswith(f"# Migration {CHANGE}")

        conn = await asyncpg.connect(assets_dsn)
        assert await target.view_target(conn, "app.assets") == "assets_v3"
        # Every transition became an ig.migration.v1 event, relayed to Kafka by the service's outbox relay.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            pending = await conn.fetchval("SELECT count(*) FROM migration.outbox WHERE published_at IS NULL")
            if pending == 0:
                break
            await asyncio.sleep(0.2)
        events = await conn.fetch("SELECT ce_type, topic, published_at FROM migration.outbox ORDER BY id")
        assert len(events) == len(report["timeline"]) and all(e["published_at"] for e in events)
        assert {(e["ce_type"], e["topic"]) for e in events} == {("ig.migration.phase_changed.v1", "ig.migration.v1")}

        # A full backout after success: blue serves again with every row green had.
        backout = await stub.Backout(migration_pb2.BackoutRequest(change=CHANGE))
        assert backout.validated and backout.blue_rows == backout.green_rows
        assert backout.blue_checksum == backout.green_checksum
        assert await target.view_target(conn, "app.assets") == "assets"
        await conn.close()
    writer.stop.set()
    await writing
    assert writer.writes > 0 and writer.errors == 0, writer.last_error


async def test_regression_scores_low_and_backs_out_without_losing_writes(assets_dsn: str, tmp_path: Path,
                                                                         kafka_bootstrap: str) -> None:
    env = base_env(assets_dsn, tmp_path, kafka_bootstrap)
    writer = Writer(assets_dsn)
    writing = asyncio.create_task(writer.run())
    first = await asyncio.to_thread(subprocess.run, [*CLI, "run", "--plan", str(PLAN), "--until", "baseline"],
                                    env=env, capture_output=True, text=True, timeout=600, check=False)
    assert first.returncode == 0, first.stderr[-3000:]
    conn = await asyncpg.connect(assets_dsn)
    # The regression: green's writes become 50 ms slower (as a bad trigger or a missing index would make them).
    await conn.execute("""CREATE FUNCTION public.slow_green() RETURNS trigger LANGUAGE plpgsql AS $$
                          BEGIN PERFORM pg_sleep(0.05); RETURN NEW; END $$""")
    await conn.execute("CREATE TRIGGER slow_green BEFORE UPDATE ON public.assets_v3 "
                       "FOR EACH ROW EXECUTE FUNCTION public.slow_green()")

    second = await asyncio.to_thread(subprocess.run, [*CLI, "run", CHANGE], env=env, capture_output=True,
                                     text=True, timeout=600, check=False)
    writer.stop.set()
    await writing

    assert second.returncode == 3, second.stderr[-3000:]
    outcome = json.loads(second.stdout.strip().splitlines()[-1])
    assert outcome["backed_out"] and outcome["aca_score"] < 0.9
    report = json.loads(await asyncio.to_thread(Path(outcome["report"]).read_text))
    latency = next(m for m in report["aca"]["metrics"] if m["metric"] == "write_latency_ms")
    assert latency["verdict"] == "high" and not latency["passed"]
    assert report["aca"]["vetoed_by"] == ["write_latency_ms"]
    backout = report["backout"]
    assert backout["validated"] and backout["blue_rows"] == backout["green_rows"]
    assert backout["blue_checksum"] == backout["green_checksum"]
    assert await target.view_target(conn, "app.assets") == "assets"
    assert not await target.table_exists(conn, "public.assets_v3")
    # Writes made while green served were kept: they reached blue through the reverse dual-write.
    kept = await conn.fetchval(
        """SELECT count(*) FROM public.assets WHERE updated_at >
             (SELECT at FROM migration.timeline WHERE to_phase = 'cutover') AND updated_at <
             (SELECT at FROM migration.timeline WHERE to_phase = 'backed-out')""")
    assert kept > 0
    assert writer.errors == 0, writer.last_error
    await conn.close()
