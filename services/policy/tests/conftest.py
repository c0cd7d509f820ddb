"""Fixtures: a private OPA over policies/rego, a migrated policy schema, and the service wired in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from ig.policy.v1 import policy_pb2_grpc
from ig_common.authz import AuthorizationTable
from ig_common.db import create_pool, prepare_service_schema
from ig_common.grpc_client import aio_channel_as
from ig_common.grpc_server import ServerSecurity, build_grpc_server
from ig_common.tls import WorkloadCertificate
from ig_policy.api.grpc_service import policy_grpc_service
from ig_policy.decisions import DecisionService
from ig_policy.domain.protection import InputOpener, RecordProtection
from ig_policy.engine.opa import OpaEngine
from ig_policy.store import MIGRATIONS, SCHEMA
from ig_policy.store.decision_log import DecisionLog, LogSettings
from ig_policy.testing import (
    OpaServer,
    SettableClock,
    decision_log_key_env,
    free_port,
    new_record_protection,
    opa_server,
)

# Generous: these tests judge correctness on a shared, busy machine; the 50 ms default is tested on its own.
TEST_TIMEOUT_MS = 20_000


@pytest.fixture(scope="session")
def private_opa() -> Iterator[OpaServer]:
    with opa_server() as server:
        yield server


@pytest.fixture(scope="session")
def opa_url(private_opa: OpaServer) -> str:
    return private_opa.url


@pytest.fixture(scope="session")
def opa_token(private_opa: OpaServer) -> str:
    return private_opa.token


@pytest.fixture(scope="session")
async def engine(opa_url: str, opa_token: str) -> AsyncIterator[OpaEngine]:
    # Few slots: under load, calls queue here (untimed) rather than inside a starved OPA (timed).
    engine = OpaEngine(opa_url, timeout_ms=TEST_TIMEOUT_MS, max_in_flight=8, token=opa_token)
    await engine.start()
    await engine.refresh_revision()
    yield engine
    await engine.close()


@pytest.fixture(scope="session")
async def policy_pool(infra: Any, database_url: str) -> AsyncIterator[asyncpg.Pool]:
    # As the service does: the runtime role, its schema migrated by the policy migrator role (a schema made by
    # the superuser here would lock out the service processes the e2e tests start in the same database).
    pool = await create_pool(infra.service_dsn("policy", database_url))
    await prepare_service_schema(pool, SCHEMA, MIGRATIONS, infra.service_dsn("policy", database_url, migrator=True))
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
def log_keys() -> tuple[RecordProtection, InputOpener]:
    """The in-process decision log's pepper and replay key (the opener is what only the replay tool holds)."""
    return new_record_protection()


@pytest.fixture(scope="session")
def decision_log_key_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return decision_log_key_env(tmp_path_factory.mktemp("decision-log-keys") / "keys")


@pytest.fixture(autouse=True)
def _decision_log_keys_in_env(decision_log_key_files: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    # The service refuses to start without them: every settings test starts from a complete environment.
    for name, value in decision_log_key_files.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="session")
async def decision_log(policy_pool: asyncpg.Pool, log_keys: tuple[RecordProtection, InputOpener]) -> DecisionLog:
    return DecisionLog(policy_pool, SCHEMA, None, LogSettings(region="region-a", protection=log_keys[0]))


@pytest.fixture(scope="session")
def clock() -> SettableClock:
    """The service's clock in these tests: the golden cases' Monday morning unless a test moves it (and back)."""
    return SettableClock()


@pytest.fixture(scope="session")
async def decisions(engine: OpaEngine, decision_log: DecisionLog, clock: SettableClock) -> DecisionService:
    return DecisionService(engine, decision_log, region="region-a", clock=clock)


@pytest.fixture(scope="session")
async def stub(decisions: DecisionService, infra: Any) -> AsyncIterator[policy_pb2_grpc.PolicyServiceStub]:
    port = free_port()
    env = infra.identities.env()
    security = ServerSecurity(WorkloadCertificate(Path(env["IG_IDENTITIES"]) / "policy"),
                              AuthorizationTable.load(Path(env["IG_AUTHZ_TABLE"])))
    server, _ = build_grpc_server([policy_grpc_service(decisions)], host="127.0.0.1", port=port, security=security)
    await server.start()
    # As a gateway would: mTLS with the gateway identity, which the table grants Decide.
    channel = aio_channel_as("gateway", f"127.0.0.1:{port}")
    yield policy_pb2_grpc.PolicyServiceStub(channel)
    await channel.close()
    await server.stop(grace=1)
