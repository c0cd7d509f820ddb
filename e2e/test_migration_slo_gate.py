"""The SLO-headroom gate against the real ig.burn.v1.BurnService (a burn process whose Prometheus is unreachable,
so every SLO it reports is stale): the gate must fail closed and say why, never pass on missing evidence."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from ig_burn.devtools.harness import BurnProcess, free_port, synthetic_slo_yaml, wait_for
from ig_migration.orchestrator import commands
from ig_migration.settings import Settings
from ig_migration.workload import create_assets

pytestmark = pytest.mark.e2e
PLAN = Path(__file__).parents[1] / "services" / "migration" / "plans" / "add-asset-index-v3.yaml"


@pytest.fixture(scope="module")
def burn(infra: object, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BurnProcess]:
    config = tmp_path_factory.mktemp("migration-slos")
    (config / "assets.yaml").write_text(synthetic_slo_yaml("assets-availability"))
    env = {**infra.env(database_url, "burn"),  # type: ignore[attr-defined]
           "IG_SLO_DIR": str(config), "IG_PROMETHEUS_URL": f"http://127.0.0.1:{free_port()}",
           "IG_EVALUATION_INTERVAL_SECONDS": "0.5", "IG_PROMETHEUS_TIMEOUT_SECONDS": "1"}
    process = BurnProcess(env, config / "burn.log").start()
    yield process
    assert process.stop() == 0, process.logs()


@pytest.fixture
async def migration_db(infra: object) -> AsyncIterator[str]:
    postgres = infra.postgres  # type: ignore[attr-defined]
    name = f"ig_mig_slo_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(postgres.dsn("postgres"))
    await admin.execute(f"CREATE DATABASE {name}")
    await admin.close()
    from ig_common.db import create_pool, prepare_schema
    from ig_migration.store import MIGRATIONS, SCHEMA

    pool = await create_pool(postgres.dsn(name), max_size=1)
    await prepare_schema(pool, SCHEMA, MIGRATIONS)
    await pool.close()
    yield postgres.dsn(name)
    admin = await asyncpg.connect(postgres.dsn("postgres"))
    await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    await admin.close()


@pytest.mark.parametrize(("slo_service", "reason"), [("synthetic", "stale SLOs ['assets-availability']"),
                                                     ("assets-api", "reports no SLO for service assets-api")])
async def test_slo_gate_asks_burn_service_and_fails_closed(burn: BurnProcess, migration_db: str, tmp_path: Path,
                                                           slo_service: str, reason: str) -> None:
    wait_for(lambda: burn.get_json("/get-burn"), timeout=30, what="burn service answering")
    conn = await asyncpg.connect(migration_db)
    await create_assets(conn, 100)
    await commands.submit(conn, PLAN.read_text().replace("slo_service: assets-api", f"slo_service: {slo_service}"))
    settings = Settings(database_url=migration_db, kafka_bootstrap="127.0.0.1:9", burn_grpc=burn.grpc_target,
                        slo_headroom=0.99, migration_artifacts_dir=tmp_path)
    passed, gates = await commands.preflight(conn, "add-asset-index-v3", settings)
    await conn.close()
    slo = next(g for g in gates if g.gate == "slo-headroom")
    # IG_SLO_HEADROOM is ignored once a BurnService is configured: the service's word is the only evidence.
    assert not passed and not slo.passed and slo.measured == 0.0
    assert f"BurnService {burn.grpc_target} unusable, failing closed" in slo.detail and reason in slo.detail
