"""Two live regions, started the way `ig-infra up --regions a,b` / `ig-infra services up --regions a,b` start them
(ig_infra.regions): region-b's own PostgreSQL, Kafka, OPA and five services, each service answering in its own
region. Private run dirs and free ports, so the shared infrastructure and a running `make up` are left alone;
region-a is the shared infrastructure with a policy service of its own (IG_REGION=region-a).

A component that cannot start fails the test (InfraError), it never skips.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import shutil
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import grpc
import pytest
from ig_infra.cli import start_components, start_services
from ig_infra.components.dex import Dex
from ig_infra.components.global_pg import GlobalPostgres
from ig_infra.components.identities import Identities
from ig_infra.paths import Paths
from ig_infra.process import InfraError, free_port, free_ports, read_pid
from ig_infra.pytest_plugin import Infra
from ig_infra.regions import REGION_A, REGION_B, SecondRegion
from ig_infra.services import SERVICES, ServiceProcess
from ig_region_test.policyprobe import RESIDENCY_RULE, ask_service, decision_input
from ig_region_test.residency import PinnedTenant
from ig_region_test.suite_proof import Suite
from ig_region_test.suite_proof import run as run_suite_proof
from ig_region_test.suite_residency import RegionStores, TenantFingerprints, saw, sha256_files, write_proof

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services" / "audit-portal" / "testing"))
from portal_stack import Stack, build_and_register, dex_token, shared_stack, write_inputs

pytestmark = pytest.mark.integration

# Pinned by the policy data (policies/rego/ig/config/data.json): alpha to region-a, gamma to region-b.
ALPHA = PinnedTenant("alpha", REGION_A, marker="two-regions-test")
GAMMA = PinnedTenant("gamma", REGION_B, marker="two-regions-test")


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
        start_services(region.services(), [*region.shared(), *components], prefix="region-b ", side_by_side=True)
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
    from ig_infra.components.postgres import Postgres

    own_postgres = next(c for c in region_b.infra() if isinstance(c, Postgres))
    services = region_b.services()
    assert [s.spec.name for s in services] == [s.name for s in SERVICES]
    for service in services:
        assert service.healthy(), f"{service.spec.name} of region-b is not healthy at {service.address()}"
        environ = environ_of(service)
        assert environ["IG_REGION"] == REGION_B, service.spec.name
        # Its own region's infrastructure, never region-a's (the shared instance's ports).
        assert environ.get("IG_KAFKA_BOOTSTRAP") == region_b.client_env()["IG_KAFKA_BOOTSTRAP"], service.spec.name
        if "IG_DATABASE_URL" in environ:
            assert f":{own_postgres.port}/" in environ["IG_DATABASE_URL"], service.spec.name
        # The shared Dex wherever region-a's runs (IG_DEX_PORT), never a default port.
        if service.spec.name == "audit-portal":
            assert environ["IG_OIDC_ISSUER"] == Dex(Paths.from_environment()).issuer
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


# --- Residency where data is served: region-b's portal and stores (issue #23, item 2) ---

REPO = Path(__file__).resolve().parents[1]
POLICY_DATA = REPO / "policies" / "rego" / "ig" / "config" / "data.json"
PROOF = REPO / "artifacts" / "residency-proof" / "suite-residency-proof.json"
# Every way a caller can say "I am in region-a" to region-b's portal: headers, forwarded values, the query.
REGION_A_CLAIMS: dict[str, str] = {
    "X-IG-Region": REGION_A, "X-Region": REGION_A, "X-Forwarded-Region": REGION_A,
    "X-Forwarded-For": "10.1.0.7", "X-Forwarded-Host": "portal.region-a.example", "X-Forwarded-Proto": "https",
    "Forwarded": "for=10.1.0.7;host=portal.region-a.example;proto=https", "Host": "portal.region-a.example",
}
FORGED_QUERY = f"region={REGION_A}&context.region={REGION_A}"


@dataclasses.dataclass(frozen=True)
class AlphaInRegionA:
    stack: Stack
    release: str
    archive: Path
    fingerprints: TenantFingerprints
    since: float
    portal_a: str


@pytest.fixture(scope="module")
def alpha_in_region_a(infra: Infra, database_url: str, kafka_bootstrap: str,
                      tmp_path_factory: pytest.TempPathFactory) -> Iterator[AlphaInRegionA]:
    """alpha's data written in region-a: a release registered with region-a's evidence service (blob store,
    ledger, events), read by alpha's auditor through a region-a portal (access entries in its ledger)."""
    since = time.time()
    stack = shared_stack(database_url, kafka_bootstrap)
    release = f"residency-{uuid.uuid4().hex[:12]}"
    inputs = write_inputs(tmp_path_factory.mktemp("alpha-inputs"))
    marker = inputs / "dr-log" / "residency-marker.txt"
    marker.write_text(f"alpha's own evidence, written in region-a only: {release}\n")
    bundle = build_and_register(stack, release, inputs, tenant="alpha")
    archive = bundle / f"evidence-{release}.tar.gz"
    fingerprints = TenantFingerprints(
        "alpha", REGION_A, needles=(release, hashlib.sha256(archive.read_bytes()).hexdigest(), "@alpha.example"),
        blob_sha256=sha256_files([archive, marker]))
    process, portal_a = stack.portal("portal-region-a", region=REGION_A, tenant_residency_file=str(POLICY_DATA))
    token = dex_token(stack.issuer, "alpha-auditor")
    status, body = _get(f"{portal_a}/audit/releases", token)
    assert status == 200 and release in json.dumps(body), (status, body)  # served at home
    try:
        yield AlphaInRegionA(stack, release, archive, fingerprints, since, portal_a)
    finally:
        process.stop()
        stack.processes.remove(process)


def _get(url: str, token: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=15) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        assert error.headers.get("Content-Type", "").startswith("application/problem+json"), error.headers
        return error.code, json.loads(error.read())


def _portal_metric(region: SecondRegion, name: str) -> float:
    port = region.service("audit-portal").spec.health_port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        lines = answer.read().decode().splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(name))


@pytest.fixture(scope="module")
def forged_at_region_b(region_b: SecondRegion, alpha_in_region_a: AlphaInRegionA) -> dict[str, object]:
    """alpha's auditor and admin ask region-b's portal for alpha's release claiming region-a every way they can;
    beta's auditor asks the same way. The answers, and region-b's refusal count before and after."""
    portal_b = f"http://127.0.0.1:{region_b.port(8080)}"
    refused_before = _portal_metric(region_b, 'ig_portal_residency_refused_total{pinned_region="region-a"}')
    release = alpha_in_region_a.release
    paths = ["/audit/releases", f"/audit/artifacts?release={release}", f"/audit/manifest/{release}/manifest.json",
             "/audit/access-log"]
    answers: dict[str, object] = {}
    # beta asks for its own catalog only: a beta request naming alpha's release would carry that name (a needle of
    # the store probe) into region-b's ledger as beta's refused attempt -- the request's words, not alpha's data.
    for user, asked in (("alpha-auditor", paths), ("alpha-admin", paths), ("beta-auditor", paths[:1])):
        token = dex_token(alpha_in_region_a.stack.issuer, user)
        for path in asked:
            joined = f"{path}{'&' if '?' in path else '?'}{FORGED_QUERY}"
            answers[f"{user} {path}"] = _get(f"{portal_b}{joined}", token, REGION_A_CLAIMS)
    return {"answers": answers, "refused_before": refused_before,
            "refused_after": _portal_metric(region_b, 'ig_portal_residency_refused_total{pinned_region="region-a"}')}


def test_region_b_portal_refuses_alpha_whatever_region_the_request_claims_and_serves_beta(
        region_b: SecondRegion, forged_at_region_b: dict[str, object]) -> None:
    answers = forged_at_region_b["answers"]
    assert isinstance(answers, dict)
    alpha = {k: v for k, v in answers.items() if k.startswith("alpha-")}
    for asked, (status, body) in alpha.items():
        assert status == 403, (asked, status, body)
        assert "pinned to region-a" in str(body["detail"]) and "region-b" in str(body["detail"]), (asked, body)
    # Counted once per refusal, and logged by region-b's portal (tenant and regions, never the user).
    assert forged_at_region_b["refused_after"] == forged_at_region_b["refused_before"] + len(alpha)  # type: ignore[operator]
    log = region_b.service("audit-portal").log_file.read_text()
    assert "residency_refused" in log and "@alpha.example" not in log
    # A global tenant is served from region-b (its catalog there is region-b's, empty: nothing registered yet).
    status, body = answers["beta-auditor /audit/releases"]
    assert status == 200 and isinstance(body.get("releases"), list), body


def _metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        lines = answer.read().decode().splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(name))


EVIDENCE_REFUSED = 'ig_evidence_residency_refused_total{pinned_region="region-a"}'


@pytest.fixture(scope="module")
def registered_at_region_b(region_b: SecondRegion, alpha_in_region_a: AlphaInRegionA) -> dict[str, object]:
    """The release job sends alpha's signed bundle (the one region-a holds) to region-b's evidence service, then
    asks it for alpha's and beta's releases: the answers, and region-b's refusal count before and after."""
    from ig.evidence.v1 import evidence_pb2, evidence_pb2_grpc
    from ig_common.grpc_client import channel_as
    from ig_evidence.bundle.upload import register_requests

    evidence = region_b.service("evidence")
    before = _metric(evidence.spec.health_port, EVIDENCE_REFUSED)
    answers: dict[str, object] = {}
    with channel_as("release", f"127.0.0.1:{evidence.spec.grpc_port}") as channel:
        stub = evidence_pb2_grpc.EvidenceServiceStub(channel)
        calls = {
            "register alpha": lambda: stub.RegisterBundle(register_requests(
                alpha_in_region_a.archive, alpha_in_region_a.release, "alpha"), timeout=30),
            "list alpha": lambda: stub.ListReleases(evidence_pb2.ListReleasesRequest(tenant="alpha"), timeout=10),
            "list beta": lambda: stub.ListReleases(evidence_pb2.ListReleasesRequest(tenant="beta"), timeout=10),
        }
        for name, call in calls.items():
            try:
                answers[name] = ("OK", str(call()))
            except grpc.RpcError as error:
                answers[name] = (error.code().name, error.details())
    return {"answers": answers, "refused_before": before,
            "refused_after": _metric(evidence.spec.health_port, EVIDENCE_REFUSED)}


def test_region_b_evidence_refuses_alpha_bundle_and_reads_and_serves_beta(
        region_b: SecondRegion, alpha_in_region_a: AlphaInRegionA, registered_at_region_b: dict[str, object]) -> None:
    answers = registered_at_region_b["answers"]
    assert isinstance(answers, dict)
    for name in ("register alpha", "list alpha"):
        code, details = answers[name]
        assert code == "FAILED_PRECONDITION", (name, code, details)
        assert "pinned to region-a" in details and "served from region-b" in details, (name, details)
    assert answers["list beta"][0] == "OK", answers["list beta"]  # a global tenant is served from region-b
    assert registered_at_region_b["refused_after"] == registered_at_region_b["refused_before"] + 2  # type: ignore[operator]
    log = region_b.service("evidence").log_file.read_text()
    assert "residency_refused" in log
    # Refused on the header: the upload was never read, so no signer check or ingest step logged the release.
    assert alpha_in_region_a.release not in log


def test_region_b_stores_hold_nothing_of_alpha_read_directly_and_the_proof_is_written(
        infra: Infra, database_url: str, region_b: SecondRegion, region_a_policy: ServiceProcess,
        alpha_in_region_a: AlphaInRegionA, forged_at_region_b: dict[str, object],
        registered_at_region_b: dict[str, object]) -> None:
    """The release's probe (``python -m ig_region_test.suite_proof``) on this module's two regions: it writes a
    marker decision for alpha at region-a's policy service, then reads region-b's PostgreSQL (every database), its
    replica of the global cluster, its Kafka (every topic from the beginning) and its evidence blob store, and
    region-a's as the positive control (this session's database, its Kafka since the data was written, the blob
    store of the evidence service that holds alpha's release)."""
    from ig_infra.components.postgres import Postgres, database_of

    postgres_b = next(c for c in region_b.infra() if isinstance(c, Postgres))
    replica = region_b.infra()[-1]
    assert isinstance(replica, GlobalPostgres)
    suite = Suite(
        home_policy=f"127.0.0.1:{region_a_policy.spec.grpc_port}", home_evidence_dsn=database_url,
        home=RegionStores(REGION_A, infra.postgres.dsn, infra.kafka.bootstrap,
                          (alpha_in_region_a.stack.work / "blobs",), databases=(database_of(database_url),),
                          kafka_since_ms=int(alpha_in_region_a.since * 1000)),
        away=RegionStores(REGION_B, postgres_b.dsn, region_b.client_env()["IG_KAFKA_BOOTSTRAP"],
                          (region_b.paths.component_dir("evidence-blobs"),), global_sql=replica.sql))
    fingerprints = alpha_in_region_a.fingerprints
    document = asyncio.run(run_suite_proof(suite, "alpha", needles=fingerprints.needles,
                                           blob_sha256=fingerprints.blob_sha256))
    write_proof(PROOF, document)
    away, home = document["absentElsewhere"], document["positiveControlAtHome"]
    stores_b = away["stores"]
    # What was read is real: region-b's services' schemas, its topics, its blob store, its global replica.
    assert stores_b["postgres"]["tables_scanned"] > 10 and stores_b["kafka"]["topics"], stores_b
    # (The global replica may hold no table at all: nothing global is written yet but another test's directory.)
    assert stores_b["blobs"][0]["exists"] and stores_b["global_postgres"]["databases"] == ["postgres"], stores_b
    assert away["count"] == 0, json.dumps(away, indent=1)[:3000]
    # Each kind of store saw alpha's data at home (the probe can see what it looks for), the marker included.
    stores_a = home["stores"]
    assert stores_a["postgres"]["count"] > 0 and stores_a["kafka"]["count"] > 0, stores_a
    assert stores_a["blobs"][0]["count"] > 0, stores_a["blobs"]
    marker, decision_id = document["fingerprints"]["needles"][:2]
    # By needle, not in `found`: that list stops at 50, and this session's database holds many other tests' rows.
    assert saw(stores_a["postgres"], marker), stores_a["postgres"]
    assert saw(stores_a["kafka"], decision_id), stores_a["kafka"]
    assert document["status"] == "passed"


async def _ledger_entries_naming(dsn: str, tenant: str) -> list[str]:
    connection = await asyncpg.connect(dsn, timeout=10)
    try:
        rows = await connection.fetch(
            "SELECT kind || ' ' || subject AS entry FROM evidence.ledger_entries "
            "WHERE strpos(subject, $1) > 0 OR position(convert_to($1, 'UTF8') IN payload) > 0", tenant)
        return [row["entry"] for row in rows]
    finally:
        await connection.close()


def test_the_ledgers_are_per_region_and_region_b_ledger_and_the_global_cluster_hold_no_entry_of_alpha(
        region_b: SecondRegion, forged_at_region_b: dict[str, object]) -> None:
    """The decision for the replicated data: the ledger is one per region, in the region's own cluster, never in
    the global one; so region-b's ledger holds no entry naming alpha (its refused requests are not ledgered there),
    and the global cluster, which replicates to region-b, holds no ledger at all."""
    from ig_infra.components.postgres import DB_NAME, Postgres

    postgres_b = next(c for c in region_b.infra() if isinstance(c, Postgres))
    assert asyncio.run(_ledger_entries_naming(postgres_b.dsn(DB_NAME), "alpha")) == []
    assert asyncio.run(_ledger_entries_naming(postgres_b.dsn(DB_NAME), "beta")), "beta's accesses are ledgered here"
    replica = region_b.infra()[-1]
    assert isinstance(replica, GlobalPostgres)
    assert replica.sql("SELECT count(*) FROM information_schema.tables WHERE table_name LIKE 'ledger%' "
                       "OR table_schema IN ('evidence', 'ledger', 'portal')") == "0"
