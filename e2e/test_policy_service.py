"""The Policy Reasoner as a real process against real PostgreSQL, Kafka and its own OPA sidecar:
the golden scenarios as a contract test (Rego directly and the gRPC service must agree), the decision log in
PostgreSQL and on Kafka, AuthZEN over HTTP, failing closed when OPA is away, clean shutdown."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import time
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import httpx
import pytest
from ig.events.v1 import events_pb2
from ig.policy.v1 import policy_pb2, policy_pb2_grpc
from ig_common.authz.workload_token import sign_workload_token
from ig_common.events.envelope import from_kafka_record
from ig_common.grpc_client import channel_as
from ig_common.http_client import client_as
from ig_common.tls import CA_FILE, CERT_FILE, KEY_FILE, WorkloadCertificate
from ig_infra.kafka_reading import consumer_at
from ig_infra.pki import DevCA
from ig_policy.protection_keys import load_opener, load_pepper
from ig_policy.testing import (
    GOLDEN_NOW,
    GoldenCase,
    OpaServer,
    RunningService,
    free_port,
    golden_cases,
    opa_server,
    policy_service,
    proto_from_input,
    set_test_clock,
    write_approvers_file,
)

pytestmark = pytest.mark.e2e

GOLDEN_KEY_ID = "ae0eaba8420d5b2aa56b5b404b00aba7ad76b301b18d93ffa41f00640ec2c023"
RESULT_NAMES = {policy_pb2.RESULT_ALLOW: "ALLOW", policy_pb2.RESULT_DENY: "DENY", policy_pb2.RESULT_STEP_UP: "STEP_UP"}
# Golden inputs protobuf can carry; the rest (a string where a number belongs...) exist only at the Rego layer.
CONTRACT = [c for c in golden_cases() if proto_from_input(c.input) is not None]


@pytest.fixture(scope="module")
def opa() -> Iterator[OpaServer]:
    with opa_server() as server:
        yield server


@pytest.fixture(scope="module")
def service(infra: Any, database_url: str, opa: OpaServer, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[RunningService]:
    env = {**infra.env(database_url, "policy"), **opa.env()}
    scratch = tmp_path_factory.mktemp("policy")
    set_test_clock(scratch / "clock", GOLDEN_NOW)
    # The budget is raised so that the contract judges answers, not this shared machine's scheduling. The golden
    # cases are judged at their own moments through the service's test clock, never through the request.
    # The golden break-glass cases carry grants the golden approver signs (ig_policy.testing.proto_from_input).
    approvers = write_approvers_file(scratch / "approvers")
    with policy_service(env, scratch / "service.log", opa_timeout_ms="5000", decision_log_flush_ms="20",
                        test_clock_file=str(scratch / "clock"), breakglass_approvers_path=str(approvers)) as running:
        yield running
        assert running.stop() == 0, "SIGTERM must stop the service cleanly"


@pytest.fixture(scope="module")
def stub(service: RunningService) -> Iterator[policy_pb2_grpc.PolicyServiceStub]:
    with channel_as("gateway", service.grpc_address) as channel:
        yield policy_pb2_grpc.PolicyServiceStub(channel)


@pytest.fixture(scope="module")
def service_in_region_b(infra: Any, database_url: str, opa: OpaServer, tmp_path_factory: pytest.TempPathFactory
                        ) -> Iterator[RunningService]:
    """The same service serving from region-b (IG_REGION): residency is judged on where it serves."""
    env = {**infra.env(database_url, "policy"), **opa.env()}
    scratch = tmp_path_factory.mktemp("policy-region-b")
    set_test_clock(scratch / "clock", GOLDEN_NOW)
    approvers = write_approvers_file(scratch / "approvers")
    with policy_service(env, scratch / "service.log", opa_timeout_ms="5000", decision_log_flush_ms="20",
                        test_clock_file=str(scratch / "clock"), breakglass_approvers_path=str(approvers),
                        region="region-b") as running:
        yield running


@pytest.fixture(scope="module")
def stub_in_region_b(service_in_region_b: RunningService) -> Iterator[policy_pb2_grpc.PolicyServiceStub]:
    with channel_as("gateway", service_in_region_b.grpc_address) as channel:
        yield policy_pb2_grpc.PolicyServiceStub(channel)


@pytest.fixture(scope="module")
def deciding_since() -> float:
    """When the contract cases started to be decided: their events on Kafka come after it."""
    return time.time()


@pytest.fixture(scope="module")
def decided(stub: policy_pb2_grpc.PolicyServiceStub, stub_in_region_b: policy_pb2_grpc.PolicyServiceStub,
            deciding_since: float, service: RunningService, service_in_region_b: RunningService
            ) -> dict[str, tuple[policy_pb2.DecideResponse | None, str]]:
    """Each contract case through the service of the region its input names (a golden case's context.region is
    where it is served from), its clock set to the case's moment: the reply, or the INVALID_ARGUMENT details."""
    by_region = {"region-a": (stub, service.log_path.with_name("clock")),
                 "region-b": (stub_in_region_b, service_in_region_b.log_path.with_name("clock"))}
    answers: dict[str, tuple[policy_pb2.DecideResponse | None, str]] = {}
    for case in CONTRACT:
        message = proto_from_input(case.input)
        serving, clock_file = by_region.get(message.context.region, by_region["region-a"])
        set_test_clock(clock_file, message.context.time.ToDatetime(tzinfo=UTC))
        try:
            answers[case.id] = (serving.Decide(message, timeout=30), "")
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
            answers[case.id] = (None, error.details() or "")
    for _, clock_file in by_region.values():
        set_test_clock(clock_file, GOLDEN_NOW)
    return answers


RESIDENCY = {c.name: c for c in CONTRACT if c.file == "residency.json"}


@pytest.mark.parametrize(("serving", "tenant_case", "forged"), [
    ("region-b", "alpha is pinned to region-a", "region-a"),  # a client in region-b claims region-a
    ("region-a", "gamma Sunday is closed", "region-b"),        # and the other way round for region-b's tenant
])
def test_residency_is_judged_on_the_serving_region_not_on_the_region_a_caller_claims(
        stub: policy_pb2_grpc.PolicyServiceStub, stub_in_region_b: policy_pb2_grpc.PolicyServiceStub,
        service: RunningService, service_in_region_b: RunningService, serving: str, tenant_case: str,
        forged: str) -> None:
    case = RESIDENCY.get(tenant_case) or next(c for c in CONTRACT if c.name == tenant_case)
    message = proto_from_input(case.input)
    message.context.region = forged
    chosen, running = (stub, service) if serving == "region-a" else (stub_in_region_b, service_in_region_b)
    set_test_clock(running.log_path.with_name("clock"), message.context.time.ToDatetime(tzinfo=UTC))
    try:
        reply = chosen.Decide(message, timeout=30)
    finally:
        set_test_clock(running.log_path.with_name("clock"), GOLDEN_NOW)
    assert (RESULT_NAMES[reply.result], reply.rule_id) == ("DENY", "ig.residency.cross_region"), reply
    assert f"from region '{serving}'" in reply.explanation


def test_most_golden_cases_are_part_of_the_contract() -> None:
    assert len(CONTRACT) >= 60


@pytest.mark.parametrize("case", CONTRACT, ids=[c.id for c in CONTRACT])
def test_service_and_rego_agree_on_the_golden_case(
    case: GoldenCase, decided: dict[str, tuple[policy_pb2.DecideResponse | None, str]], opa: OpaServer
) -> None:
    direct = httpx.post(f"{opa.url}/v1/data/ig/ctx/decision", json={"input": case.input}, headers=opa.headers,
                        timeout=10).json()["result"]
    assert case.mismatches(direct) == []
    reply, refusal = decided[case.id]
    if reply is None:
        # Malformed for the contract already: refused before Rego, naming the field the Rego names too.
        assert direct["rule_id"] == "ig.input.invalid"
        assert case.expect["explanation_contains"] in refusal
        return
    through_service = {
        "result": RESULT_NAMES[reply.result], "rule_id": reply.rule_id, "explanation": reply.explanation,
        "reasons": [{"rule_id": r.rule_id, "message": r.message} for r in reply.reasons],
        "obligations": list(reply.obligations),
    }
    assert through_service == {k: direct[k] for k in through_service}


async def _events_for(bootstrap: str, ids: set[str], since: float, within: float) -> dict[str, Any]:
    found: dict[str, Any] = {}
    async with consumer_at(bootstrap, "ig.policy.decisions.v1", since=since) as consumer:
        deadline = asyncio.get_running_loop().time() + within
        while set(found) != ids and asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=300)).values():
                for record in records:
                    event = from_kafka_record(record.topic, record.key, record.value, list(record.headers))
                    if event.subject in ids:
                        found[event.subject] = event
    return found


async def test_decisions_are_logged_masked_and_published(
    decided: dict[str, tuple[policy_pb2.DecideResponse | None, str]], deciding_since: float, database_url: str,
    kafka_bootstrap: str,
) -> None:
    ids = {reply.decision_id for reply, _ in decided.values() if reply is not None}
    conn = await asyncpg.connect(database_url)
    try:
        for _ in range(100):
            rows = await conn.fetch("SELECT decision_id, record FROM policy.decision_log WHERE decision_id = ANY($1)",
                                    list(ids))
            if len(rows) == len(ids):
                break
            await asyncio.sleep(0.1)
    finally:
        await conn.close()
    assert {r["decision_id"] for r in rows} == ids
    record = json.loads(rows[0]["record"])
    # The default mask puts the keyed pseudonym in place of /input/actor/id; the whole input is sealed to the
    # replay key (ig-infra's env: the pepper and public key for the service, the private key for replay).
    pseudonym = load_pepper(Path(os.environ["IG_DECISION_LOG_PEPPER_FILE"]))
    sealed_input = load_opener(Path(os.environ["IG_DECISION_LOG_REPLAY_KEY_FILE"])).open(
        record["sealedInput"], rows[0]["decision_id"])
    actor = sealed_input["actor"]
    assert record["input"]["actor"]["id"] == pseudonym(actor["id"]) != actor["id"]
    assert record["input"] == {**sealed_input, "actor": {**actor, "id": pseudonym(actor["id"])}}
    assert record["subject"] == pseudonym(f"{actor['tenant']}/{actor['id']}")
    assert record["policyRevision"].startswith("sha256:")
    events = await _events_for(kafka_bootstrap, ids, deciding_since, within=60)
    assert set(events) == ids
    assert all(e.type == "ig.policy.decision.v1" and e.id == f"evt_{e.subject}" for e in events.values())
    # Break-glass: the signed grant's approver in the row and on Kafka; a self-asserted one's refusal too.
    records = {r["decision_id"]: json.loads(r["record"]) for r in rows}
    for name, expected in (("break_glass:valid break-glass lifts the weekend window", "golden-approver"),
                           ("break_glass:self-asserted break-glass (justification and expiry, no signed grant) is "
                            "denied", "")):
        reply = decided[name][0]
        assert reply is not None
        glass = records[reply.decision_id]["breakGlass"]
        published = events[reply.decision_id].parse(events_pb2.PolicyDecision()).break_glass
        assert glass.get("approver", "") == published.approver == expected
        if expected:
            assert glass["approverKeyId"] == published.approver_key_id == GOLDEN_KEY_ID
            assert glass["jti"] == published.jti == "bg-golden-01"
        else:
            assert glass["rejection"] == "no signed grant" and published.rejection == "no signed grant"


def _authzen_body() -> dict[str, Any]:
    document = next(c for c in golden_cases() if c.name == "alpha risk 40 opens the step-up band").input
    return {
        "subject": {"type": "user", "id": document["actor"]["id"], "properties": {
            k: document["actor"][k] for k in ("tenant", "roles", "purposes")}},
        "resource": {"type": document["resource"]["type"], "id": document["resource"]["id"], "properties": {
            k: document["resource"][k] for k in ("tenant", "purpose", "region", "classification")}},
        "action": {"name": document["action"]},
        "context": document["context"],
    }


EVALUATION_PATH = "/access/v1/evaluation"


def test_authzen_over_http(service: RunningService) -> None:
    """As a gateway calls it: HTTPS with its workload certificate, a workload token, the table grants it."""
    with client_as("gateway", service.authzen_url, "policy", timeout=30) as client:
        reply = client.post(EVALUATION_PATH, json=_authzen_body())
    assert reply.status_code == 200, reply.text
    assert reply.json()["decision"] is False
    assert reply.json()["context"]["step_up"]["obligations"] == ["step_up:mfa"]
    assert reply.headers["x-ig-rule-id"] == "ig.risk.step_up"


@pytest.fixture(scope="module")
def foreign_identities(infra: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("foreign-identities")
    other_ca = DevCA.load_or_create(root / "other-ca", common_name="another CA")
    return {"gateway@other-ca": other_ca.issue("gateway", root / "gateway-other-ca").directory,
            "intruder": infra.identities.ca().issue("intruder", root / "intruder").directory}


def _https(service: RunningService, certificate_dir: Path | None, infra: Any) -> httpx.Client:
    """An HTTPS client that trusts the suite's CA and presents the certificate in ``certificate_dir`` (or none)."""
    ca = (infra.identities.issued("gateway").directory / CA_FILE).read_text()
    context = ssl.create_default_context(cadata=ca)
    if certificate_dir is not None:
        context.load_cert_chain(certificate_dir / CERT_FILE, certificate_dir / KEY_FILE)
    return httpx.Client(base_url=service.authzen_url, verify=context, timeout=30)


def _token(signer: Path, presented: Path, **signing: Any) -> str:
    """A workload token signed with ``signer``'s key, carrying ``presented``'s certificate in x5c."""
    key, cert = (signer / KEY_FILE).read_bytes(), (presented / CERT_FILE).read_bytes()
    issuer = WorkloadCertificate(presented).spiffe_id
    return sign_workload_token(key, cert, issuer, issuer.sibling("policy"), **signing)


def _refused_counts(service: RunningService) -> float:
    metrics = httpx.get(f"{service.http_url}/metrics", timeout=10, follow_redirects=True).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("ig_http_authz_refused_total{"))


def test_authzen_without_a_client_certificate_fails_the_handshake(service: RunningService, infra: Any) -> None:
    with _https(service, None, infra) as client, pytest.raises(httpx.TransportError):
        client.post(EVALUATION_PATH, json=_authzen_body())


def test_authzen_with_a_certificate_of_another_ca_fails_the_handshake(
        service: RunningService, infra: Any, foreign_identities: dict[str, Path]) -> None:
    foreign = foreign_identities["gateway@other-ca"]
    with _https(service, foreign, infra) as client, pytest.raises(httpx.TransportError):
        client.post(EVALUATION_PATH, json=_authzen_body(),
                    headers={"Authorization": f"Bearer {_token(foreign, foreign)}"})


def test_authzen_without_a_token_is_401_naming_the_header(service: RunningService, infra: Any) -> None:
    before = _refused_counts(service)
    with _https(service, infra.identities.issued("gateway").directory, infra) as client:
        reply = client.post(EVALUATION_PATH, json=_authzen_body())
    assert reply.status_code == 401
    assert reply.headers["content-type"] == "application/problem+json"
    assert "Authorization" in reply.json()["detail"]
    assert reply.headers["www-authenticate"].startswith("Bearer")
    assert _refused_counts(service) > before


def test_authzen_token_signed_by_another_key_than_its_certificate_is_401(service: RunningService,
                                                                          infra: Any) -> None:
    gateway, operator = (infra.identities.issued(n).directory for n in ("gateway", "operator"))
    with _https(service, gateway, infra) as client:
        reply = client.post(EVALUATION_PATH, json=_authzen_body(),
                            headers={"Authorization": f"Bearer {_token(operator, gateway)}"})
    assert reply.status_code == 401
    assert "Signature verification failed" in reply.json()["detail"]


def test_authzen_expired_token_is_401(service: RunningService, infra: Any) -> None:
    gateway = infra.identities.issued("gateway").directory
    with _https(service, gateway, infra) as client:
        reply = client.post(EVALUATION_PATH, json=_authzen_body(), headers={
            "Authorization": f"Bearer {_token(gateway, gateway, now=time.time() - 120)}"})
    assert reply.status_code == 401
    assert "expired" in reply.json()["detail"]


def test_authzen_token_of_an_identity_the_table_does_not_know_is_401(
        service: RunningService, infra: Any, foreign_identities: dict[str, Path]) -> None:
    intruder = foreign_identities["intruder"]
    with _https(service, intruder, infra) as client:
        reply = client.post(EVALUATION_PATH, json=_authzen_body(),
                            headers={"Authorization": f"Bearer {_token(intruder, intruder)}"})
    assert reply.status_code == 401
    assert "spiffe://maestro.local/ns/ig/sa/intruder is not known" in reply.json()["detail"]


def test_authzen_identity_not_granted_is_403_naming_the_path_and_the_caller(service: RunningService) -> None:
    with client_as("operator", service.authzen_url, "policy", timeout=30) as client:
        reply = client.post(EVALUATION_PATH, json=_authzen_body())
        unlisted = client.get("/docs")
    assert reply.status_code == 403
    assert reply.json()["detail"] == \
        f"POST {EVALUATION_PATH} is not granted to spiffe://maestro.local/ns/ig/sa/operator"
    assert unlisted.status_code == 403, "a route without a row in the table is refused to everyone"


def test_the_engine_is_warmed_up_before_the_service_reports_ready(service: RunningService) -> None:
    """The fixture waited for /healthz: by then the service had evaluated OPA's decision and batch rules once, so a
    new pod's first decisions do not pay OPA's query preparation and the first connection within their budget."""
    events = [line for line in service.log_path.read_text(errors="replace").splitlines() if "opa_warm" in line]
    assert events and "opa_warmed_up" in events[0], events


def test_health_and_metrics_stay_plain_on_the_http_port_without_authzen(service: RunningService) -> None:
    assert httpx.get(f"{service.http_url}/healthz", timeout=10).json() == {"status": "ok"}
    metrics = httpx.get(f"{service.http_url}/metrics", timeout=10, follow_redirects=True)
    assert "ig_http_authz_refused_total" in metrics.text
    plain = httpx.post(f"{service.http_url}{EVALUATION_PATH}", json=_authzen_body(), timeout=10)
    assert plain.status_code == 404, "AuthZEN must not answer on the plain health port"


def test_without_opa_every_answer_is_deny(infra: Any, database_url: str, tmp_path: Path) -> None:
    env = {**infra.env(database_url, "policy"), "IG_OPA_URL": f"http://127.0.0.1:{free_port()}"}
    set_test_clock(tmp_path / "clock", GOLDEN_NOW)
    with policy_service(env, tmp_path / "service.log", test_clock_file=str(tmp_path / "clock")) as running, \
            channel_as("gateway", running.grpc_address) as ch:
        stub = policy_pb2_grpc.PolicyServiceStub(ch)
        allowed = next(c for c in golden_cases() if c.name == "same tenant and purpose may read")
        reply, call = stub.Decide.with_call(proto_from_input(allowed.input), timeout=30)
        assert reply.result == policy_pb2.RESULT_DENY
        assert reply.rule_id == "ig.system.engine_unavailable"
        assert dict(call.initial_metadata())["x-ig-rule-id"] == "ig.system.engine_unavailable"
        assert reply.policy_revision == "unknown"
