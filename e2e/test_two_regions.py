"""Two live regions, started the way `ig-infra up --regions a,b` / `ig-infra services up --regions a,b` start them
(ig_infra.regions): region-b's own PostgreSQL, Kafka, OPA and five services, each service answering in its own
region. Private run dirs and free ports, so the shared infrastructure and a running `make up` are left alone;
region-a is the shared infrastructure with a policy service of its own (IG_REGION=region-a).

A component that cannot start fails the test (InfraError), it never skips.
"""

from __future__ import annotations

import dataclasses
import shutil
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import pytest
from ig_infra.cli import start_components, start_services
from ig_infra.components.global_pg import GlobalPostgres
from ig_infra.components.identities import Identities
from ig_infra.paths import Paths
from ig_infra.process import InfraError, free_port, read_pid
from ig_infra.pytest_plugin import Infra
from ig_infra.regions import REGION_A, REGION_B, SecondRegion
from ig_infra.services import SERVICES, ServiceProcess
from ig_region_test.policyprobe import RESIDENCY_RULE, ask_service, decision_input
from ig_region_test.residency import PinnedTenant

pytestmark = pytest.mark.integration

# Pinned by the policy data (policies/rego/ig/config/data.json): alpha to region-a, gamma to region-b.
ALPHA = PinnedTenant("alpha", REGION_A, marker="two-regions-test")
GAMMA = PinnedTenant("gamma", REGION_B, marker="two-regions-test")


def free_ports() -> Callable[[int], int]:
    """A distinct free port for each of region-a's ports, the same one each time it is asked for."""
    chosen: dict[int, int] = {}

    def port(base: int) -> int:
        while base not in chosen:
            candidate = free_port()
            if candidate not in chosen.values():
                chosen[base] = candidate
        return chosen[base]

    return port


@pytest.fixture(scope="module")
def run_root() -> Iterator[Path]:
    # Not under pytest's tmp_path: PostgreSQL runs as `postgres`, which cannot traverse root's 0700 /tmp/pytest-of-*.
    root = Path(f"/var/tmp/ig-two-regions-test-{free_port()}")
    root.mkdir(mode=0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def region_b(infra: Infra, run_root: Path) -> Iterator[SecondRegion]:
    region = SecondRegion(REGION_B, Paths(cache=infra.paths.cache, run=run_root / REGION_B), free_ports())
    primary = region.global_primary()  # Unix socket only, in the private run dir: no port to collide on
    components = region.infra()
    try:
        start_components([primary])
        start_components(components, prefix="region-b ")
        start_services(region.services(), components, prefix="region-b ", side_by_side=True)
        yield region
    finally:
        for service in reversed(region.services()):
            service.stop()
        for component in reversed(components):
            component.stop()
        primary.stop()


@pytest.fixture(scope="module")
def region_a_policy(infra: Infra, run_root: Path, database_url: str) -> Iterator[ServiceProcess]:
    """region-a's policy service on the shared infrastructure (its database: this session's test database)."""
    spec = next(s for s in SERVICES if s.name == "policy")
    port = free_ports()
    spec = dataclasses.replace(spec, http_port=port(spec.http_port), grpc_port=port(50051),
                               extra_ports={k: port(v) for k, v in spec.extra_ports.items()},
                               extra_env={"IG_REGION": REGION_A, **infra.database_env("policy", database_url)})
    paths = Paths(cache=infra.paths.cache, run=run_root / REGION_A)
    identities = Identities(paths)  # its run dir's identities: ig-infra checks its health as that dir's operator
    identities.start()
    service = ServiceProcess(spec, paths)
    try:
        service.start([identities, infra.kafka, infra.opa])
        yield service
    finally:
        service.stop()


def environ_of(service: ServiceProcess) -> dict[str, str]:
    pid = read_pid(service.pid_file)
    assert pid is not None, f"{service.spec.name} is not running"
    return dict(item.split("=", 1) for item in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in item)


def residency_rules(answer: dict[str, object]) -> set[object]:
    reasons = answer["reasons"]
    assert isinstance(reasons, list)
    return ({answer["rule_id"]} | {r["rule_id"] for r in reasons}) & {RESIDENCY_RULE}


@pytest.mark.parametrize(("tenant", "claimed"), [(ALPHA, REGION_A), (GAMMA, REGION_B)], ids=["alpha", "gamma"])
def test_each_region_policy_judges_residency_on_its_own_region_whatever_the_request_claims(
        region_b: SecondRegion, region_a_policy: ServiceProcess, tenant: PinnedTenant, claimed: str) -> None:
    # context.region is forged to the tenant's home region: only the serving region counts.
    forged = decision_input(tenant, claimed)
    answers = {REGION_A: ask_service(f"127.0.0.1:{region_a_policy.spec.grpc_port}", forged),
               REGION_B: ask_service(f"127.0.0.1:{region_b.service('policy').spec.grpc_port}", forged)}
    away = REGION_B if tenant.home == REGION_A else REGION_A
    assert answers[away]["result"] == "DENY" and answers[away]["rule_id"] == RESIDENCY_RULE, answers[away]
    # At home the residency rule has no say (other rules, e.g. the tenant's access hours, may still deny).
    assert residency_rules(answers[tenant.home]) == set(), answers[tenant.home]


def test_every_region_b_service_is_healthy_at_region_b_addresses_and_knows_its_region(
        region_b: SecondRegion) -> None:
    services = region_b.services()
    assert [s.spec.name for s in services] == [s.name for s in SERVICES]
    for service in services:
        assert service.healthy(), f"{service.spec.name} of region-b is not healthy at {service.address()}"
        environ = environ_of(service)
        assert environ["IG_REGION"] == REGION_B, service.spec.name
        # Its own region's infrastructure, never region-a's (the shared instance's ports).
        assert environ.get("IG_KAFKA_BOOTSTRAP") == region_b.client_env()["IG_KAFKA_BOOTSTRAP"], service.spec.name
        if "IG_DATABASE_URL" in environ:
            assert f":{region_b.port(55432)}/" in environ["IG_DATABASE_URL"], service.spec.name
    portal = region_b.service("audit-portal")
    assert environ_of(portal)["IG_EVIDENCE_TARGET"] == region_b.client_env()["IG_EVIDENCE_GRPC"]
    # The browser-facing portal answers at region-b's address (its sign-in page redirects to the shared Dex).
    with urllib.request.urlopen(f"http://127.0.0.1:{portal.spec.health_port}/healthz", timeout=5) as answer:
        assert answer.status == 200


async def _schemas(dsn: str) -> set[str]:
    connection = await asyncpg.connect(dsn, timeout=10)
    try:
        return {row["nspname"] for row in await connection.fetch("SELECT nspname FROM pg_namespace")}
    finally:
        await connection.close()


def test_region_b_services_keep_their_state_in_region_b_postgres(region_b: SecondRegion) -> None:
    import asyncio

    from ig_infra.components.postgres import Postgres

    postgres = next(c for c in region_b.infra() if isinstance(c, Postgres))
    schemas = asyncio.run(_schemas(postgres.dsn()))
    assert {"policy", "evidence", "burn", "migration", "portal"} <= schemas, schemas


def test_global_data_committed_in_region_a_is_already_applied_in_region_b(region_b: SecondRegion) -> None:
    replica = region_b.infra()[-1]
    assert isinstance(replica, GlobalPostgres) and replica.healthy()
    primary = replica.replica_of
    assert primary is not None
    assert primary.sql("SHOW synchronous_commit") == "remote_apply"
    assert primary.sql("SELECT sync_state FROM pg_stat_replication WHERE application_name = 'region_b'") == "sync"
    primary.sql("CREATE TABLE IF NOT EXISTS tenants_directory (tenant text PRIMARY KEY, home_region text)")
    tenant = f"beta-{uuid.uuid4().hex[:8]}"
    primary.sql(f"INSERT INTO tenants_directory VALUES ('{tenant}', 'global')")
    # remote_apply: the commit returned only once region-b had applied it, so region-b reads it at once, no wait.
    assert replica.sql(f"SELECT home_region FROM tenants_directory WHERE tenant = '{tenant}'") == "global"
    with pytest.raises(InfraError, match="read-only transaction"):
        replica.sql("INSERT INTO tenants_directory VALUES ('x', 'region-b')")
