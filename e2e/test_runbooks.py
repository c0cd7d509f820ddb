"""Every command of every runbook in docs/runbooks/, run as written (one bash per runbook, top to bottom) against
real components in the situation the runbook handles: an incomplete evidence bundle, a burn that engaged the
throttle, a failed failover test, a completed migration that must be backed out."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from ig_infra.components.postgres import database_of

REPO = Path(__file__).resolve().parents[1]
RUNBOOKS = REPO / "docs" / "runbooks"
EXPECT = re.compile(r"\s+#\s*exits\s+(\d+)\s*$")
pytestmark = pytest.mark.e2e


def commands(runbook: Path) -> list[tuple[str, int]]:
    """The bash blocks' commands (continuation lines joined) with the exit status each must end with."""
    found: list[tuple[str, int]] = []
    for block in re.findall(r"```bash\n(.*?)```", runbook.read_text(), re.S):
        for command in re.sub(r"\\\n\s*", " ", block).splitlines():
            if not command.strip() or command.lstrip().startswith("#"):
                continue
            expected = EXPECT.search(command)
            found.append((EXPECT.sub("", command), int(expected.group(1)) if expected else 0))
    return found


def script(runbook: Path) -> str:
    """A bash script that runs each command and stops at the first one whose exit status is not the expected."""
    lines = ["set -u -o pipefail", "cd " + str(REPO)]
    for index, (command, expected) in enumerate(commands(runbook)):
        lines += [f"printf '%s\\n' {shlex.quote(f'### [{index}] (expect exit {expected}) {command}')}",
                  command, "rc=$?",
                  f'if [ "$rc" -ne {expected} ]; then echo "### [{index}] exited $rc, expected {expected}"; '
                  "exit 99; fi"]
    return "\n".join(lines) + "\necho '### all commands behaved'\n"


def run_runbook(name: str, env: dict[str, str], timeout: float = 600) -> str:
    done = subprocess.run(["bash", "-c", script(RUNBOOKS / name)], env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=timeout, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0 and "### all commands behaved" in done.stdout, output[-6000:]
    return output


def cli(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def test_every_runbook_has_commands_and_the_parser_sees_expected_failures() -> None:
    for name in ("evidence-missing.md", "burn-exceeded.md", "failover-test-fail.md", "migration-backout.md"):
        assert len(commands(RUNBOOKS / name)) >= 3, name
    assert ("uv run ig-evidence verify \"$BUNDLE\" --key \"$PUB\"", 1) in commands(RUNBOOKS / "evidence-missing.md")


def test_a_runbook_command_that_misbehaves_fails_the_run(tmp_path: Path) -> None:
    book = tmp_path / "broken.md"
    book.write_text("```bash\ntrue\nfalse\n```\n```bash\ntrue  # exits 1\n```\n")
    assert commands(book) == [("true", 0), ("false", 0), ("true", 1)]
    done = subprocess.run(["bash", "-c", script(book)], capture_output=True, text=True, check=False)
    assert done.returncode == 99 and "### [1] exited 1, expected 0" in done.stdout


# --- evidence missing -------------------------------------------------------------------------------------------

COLLECTED = ["load-report", "chaos-report", "aca-report", "dr-log", "rtbf-log", "residency-proof", "slo-report",
             "multi-region", "migration-timeline"]  # every collected type but decision-coverage: the gap


def test_evidence_missing_runbook(infra: Any, database_url: str, tmp_path: Path) -> None:
    from ig_release.suite import free_port, service

    grpc_port = free_port()
    keys, inputs, bundle = tmp_path / "keys", tmp_path / "inputs", tmp_path / "bundle"
    subprocess.run([cli("ig-evidence"), "keygen", "--out", str(keys)], check=True, capture_output=True)
    subprocess.run([cli("ig-evidence"), "trust", str(keys / "cosign.pub"), "--signers", str(tmp_path / "signers.yaml"),
                    "--tenant", "alpha", "--name", "runbook release key"], check=True, capture_output=True)
    env = {**infra.database_env("evidence", database_url),
           "IG_KAFKA_BOOTSTRAP": infra.kafka.env()["IG_KAFKA_BOOTSTRAP"], "IG_GRPC_PORT": str(grpc_port),
           "IG_TENANT_RESIDENCY_FILE": infra.env(database_url)["IG_TENANT_RESIDENCY_FILE"],
           "IG_PUBLIC_PORT": str(free_port()),
           "IG_BLOB_STORE_PATH": str(tmp_path / "blobs"), "IG_TRUSTED_SIGNERS_PATH": str(tmp_path / "signers.yaml")}
    with service("ig_evidence.app", env, tmp_path / "evidence.log", free_port()):
        for kind in COLLECTED:
            (inputs / kind).mkdir(parents=True)
            (inputs / kind / f"{kind}.json").write_text(json.dumps({"type": kind, "release": "v1.2.1"}) + "\n")
        built = subprocess.run([cli("ig-evidence"), "build", "--release", "v1.2.1", "--inputs", str(inputs), "--out",
                                str(bundle), "--key", str(keys / "cosign.key"), "--ledger", f"127.0.0.1:{grpc_port}",
                                "--tenant", "alpha", "--allow-incomplete"], cwd=REPO, capture_output=True, text=True,
                               env={**os.environ, "SOURCE_DATE_EPOCH": "1767225600"})
        assert built.returncode == 0, built.stdout + built.stderr
        assert json.loads((bundle / "manifest.json").read_text())["complete"] is False
        output = run_runbook("evidence-missing.md", {
            "RELEASE": "v1.2.1", "BUNDLE": str(bundle), "DELTA": str(tmp_path / "delta"),
            "KEY": str(keys / "cosign.key"), "PUB": str(keys / "cosign.pub"),
            "EVIDENCE_GRPC": f"127.0.0.1:{grpc_port}", "TENANT": "alpha", "SOURCE_DATE_EPOCH": "1767225600"})
    assert "incomplete: decision-coverage" in output and "Verified OK" in output
    amended = json.loads((tmp_path / "bundle-amended" / "manifest.json").read_text())
    assert amended["complete"] is True
    assert any(a["type"] == "decision-coverage" for a in amended["artifacts"])


# --- burn exceeded ----------------------------------------------------------------------------------------------

@pytest.fixture
def throttled_burn(infra: Any, database_url: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The real burn service over a private Prometheus (windows scaled), driven past 20 % so it throttled."""
    from ig_burn.devtools.harness import (
        BurnProcess,
        free_port,
        prometheus_config,
        synthetic_slo_yaml,
        throttle_policy_yaml,
        wait_for,
    )
    from ig_burn.devtools.synthetic_exporter import Workload, serve
    from ig_infra.components.prometheus import PrivatePrometheus

    slo = f"runbook-{uuid.uuid4().hex[:6]}"
    with ExitStack() as stack:
        workload = Workload(series=1, rps=200.0, error_ratio=0.0)
        exporter = serve(workload, "127.0.0.1", free_port())
        stack.callback(exporter.shutdown)
        prometheus = PrivatePrometheus(infra.paths.cache, tmp_path / "prometheus", prometheus_config(
            {"synthetic": f"127.0.0.1:{exporter.server_address[1]}"}), free_port()).start()
        stack.callback(prometheus.remove)
        slos = tmp_path / "slos"
        slos.mkdir()
        (slos / "slo.yaml").write_text(synthetic_slo_yaml(slo) + "---\n" + throttle_policy_yaml(slo, min_dwell="2s"))
        burn = BurnProcess({**infra.env(database_url, "burn"), "IG_SLO_DIR": str(slos),
                            "IG_PROMETHEUS_URL": prometheus.url, "IG_EVALUATION_INTERVAL_SECONDS": "1",
                            "IG_WINDOW_SCALE": "86400", "IG_MIN_WINDOW_SECONDS": "3"}, tmp_path / "burn.log").start()
        stack.callback(burn.stop)

        def state() -> dict[str, Any]:
            return next(s for s in burn.get_json("/get-burn")["slos"] if s["slo"] == slo)  # type: ignore[no-any-return]

        wait_for(lambda: not state()["stale"], timeout=60, what="first data")
        workload.set_ratio(0.05, None)
        wait_for(lambda: state()["throttleState"] == "throttled", timeout=90, what="throttle")
        yield {"BURN_PUBLIC_URL": burn.url, "IG_BURN_API": burn.api_url, "IG_BURN_GRPC": burn.grpc_target,
               "IG_DATABASE_URL": database_url,
               "SERVICE": "synthetic", "SLO": slo}


def test_burn_exceeded_runbook(throttled_burn: dict[str, str]) -> None:
    output = run_runbook("burn-exceeded.md", throttled_burn)
    assert '"throttleState": "throttled"' in output and throttled_burn["SLO"] in output
    assert "open" in output  # the incident the throttle opened
    history = subprocess.run([cli("ig-release"), "flag", "show", "subs.optimizedBuffer", "--burn-grpc",
                              throttled_burn["IG_BURN_GRPC"]], capture_output=True, text=True, check=True).stdout
    reasons = [change.get("reason", "") for change in json.loads(history)["history"]]
    assert "hold off until the reliability fix ships" in reasons and "reliability fix deployed" in reasons


# --- failover test fail ----------------------------------------------------------------------------------------

def test_failover_test_fail_runbook(tmp_path: Path) -> None:
    artifacts = tmp_path / "region"
    # The situation: a failover that cannot complete (region-b unreachable too) -> RTO exceeded, exit 1.
    failed = subprocess.run([cli("region-test"), "--simulate-failover", "--assert-rpo", "300", "--assert-rto", "5",
                             "--failure", "partition-both", "--no-kafka", "--no-policy", "--warmup", "1",
                             "--artifacts", str(artifacts)], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert failed.returncode == 1, failed.stdout[-3000:] + failed.stderr[-3000:]
    output = run_runbook("failover-test-fail.md", {"REGION_ARTIFACTS": str(artifacts)}, timeout=900)
    assert '"rto_exceeded": true' in output  # step 1 read the failed run
    results = json.loads((artifacts / "multi-region" / "multi-region-results.json").read_text())
    assert results["status"] == "passed"  # step 3 reproduced the run, which passes now


# --- migration backout -----------------------------------------------------------------------------------------

async def assets_database(infra: Any, rows: int) -> str:
    from ig_migration.workload import create_assets

    # laid out like the suite's databases; the assets belong to the migration runtime role, as ig-migrate runs
    admin_url = await asyncio.to_thread(infra.new_database, "ig_runbook")
    dsn = str(infra.service_dsn("migration", admin_url))
    conn = await asyncpg.connect(dsn)
    await create_assets(conn, rows)
    await conn.close()
    return dsn


async def migrate_under_writes(dsn: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The situation: add-asset-index-v3 completed on a live table (the canary needs writes to judge)."""
    from ig_migration.workload import Writer

    writer = Writer(dsn)
    writing = asyncio.create_task(writer.run())
    try:
        return await asyncio.to_thread(
            subprocess.run, [cli("ig-migrate"), "run", "--plan", "services/migration/plans/add-asset-index-v3.yaml"],
            env={**os.environ, **env}, cwd=REPO, capture_output=True, text=True, timeout=600)
    finally:
        writer.stop.set()
        await writing


def test_migration_backout_runbook(infra: Any, tmp_path: Path) -> None:
    dsn = asyncio.run(assets_database(infra, 5000))
    env = {"IG_DATABASE_URL": dsn, "IG_MIGRATION_DATABASE_URL": str(infra.service_dsn("migration", dsn, migrator=True)),
           "IG_MIGRATION_ARTIFACTS_DIR": str(tmp_path), "IG_SLO_HEADROOM": "0.8",
           "IG_KAFKA_BOOTSTRAP": infra.kafka.env()["IG_KAFKA_BOOTSTRAP"], "CHANGE": "add-asset-index-v3"}
    try:
        ran = asyncio.run(migrate_under_writes(dsn, env))
        assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-3000:]
        output = run_runbook("migration-backout.md", env)
        assert "FROM assets_v3" in output and "add-asset-index-v3.md" in output  # green served; report kept
        assert '"validated": true' in output  # steps 2 and 3

        async def state() -> tuple[str, bool]:
            conn = await asyncpg.connect(dsn)
            try:
                view = await conn.fetchval("SELECT pg_get_viewdef('app.assets')")
                green = await conn.fetchval("SELECT to_regclass('public.assets_v3') IS NOT NULL")
                return str(view), bool(green)
            finally:
                await conn.close()

        view, green_exists = asyncio.run(state())
        assert "assets_v3" not in view and not green_exists
    finally:
        async def drop() -> None:
            admin = await asyncpg.connect(infra.postgres.dsn("postgres"))
            await admin.execute(f"DROP DATABASE IF EXISTS {database_of(dsn)} WITH (FORCE)")
            await admin.close()

        asyncio.run(drop())
