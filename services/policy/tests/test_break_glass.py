"""Signed break-glass against the real OPA and PostgreSQL: only a grant an approver of the tenant signed, inside its
window at the server's clock, for this subject, tenant and scope, opens anything; every use is logged and its
event names the approver; a bad approvers file stops start-up naming the entry."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import jwt
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf.timestamp_pb2 import Timestamp
from ig.events.v1 import events_pb2
from ig.policy.v1 import policy_pb2, policy_pb2_grpc
from ig_common.authz import AuthorizationTable
from ig_common.authz.http_guard import guarded_by_table
from ig_common.grpc_client import aio_channel_as
from ig_common.grpc_server import ServerSecurity, build_grpc_server
from ig_common.http_client import WorkloadTokenAuth
from ig_common.http_server import build_api_app
from ig_common.settings import SettingsError, load_settings
from ig_common.tls import WorkloadCertificate
from ig_policy.api.authzen import mount_authzen
from ig_policy.api.grpc_service import policy_grpc_service
from ig_policy.breakglass import (
    BREAK_GLASS_USES,
    BreakGlassVerifier,
    issue_grant,
    key_id_of,
    load_approvers,
    load_private_key,
)
from ig_policy.decisions import DecisionService
from ig_policy.domain.breakglass import GRANT_TYPE
from ig_policy.domain.masking import parse_drop_rules
from ig_policy.domain.model import Actor, BreakGlass, Context, DecisionRequest, Resource, Result
from ig_policy.engine.opa import OpaEngine
from ig_policy.settings import Settings
from ig_policy.store import SCHEMA
from ig_policy.store.decision_log import DecisionLog, LogSettings
from ig_policy.testing import SettableClock, free_port, new_record_protection, write_approvers_file

pytestmark = pytest.mark.integration

# Saturday noon: alpha's time window denies, so only an accepted grant can make the answer ALLOW.
SATURDAY = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
SCOPE = {"resource_type": "case", "resource_id": "case-1", "action": "read", "classification": "internal"}
JUSTIFICATION = "P1 incident INC-4711 customer outage"
PROTECTION, _ = new_record_protection()
CAROL, DAVE, MALLORY = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))

REQUEST = DecisionRequest(
    actor=Actor("u-alice", "alpha", ("oncall",), ("investigation",)),
    resource=Resource("case", "case-1", "alpha", "investigation", "region-a", "internal"),
    action="read",
    context=Context(SATURDAY, "corp", "high", 10, "mfa", "region-a"),
)


def grant(key: ec.EllipticCurvePrivateKey = CAROL, *, approver: str = "carol", subject: str = "u-alice",
          tenant: str = "alpha", scope: dict[str, str] | None = None, ttl: timedelta = timedelta(minutes=15),
          issued: datetime = SATURDAY - timedelta(minutes=1)) -> str:
    return issue_grant(key, approver=approver, subject=subject, tenant=tenant, scope=scope or SCOPE,
                       justification=JUSTIFICATION, ttl=ttl, now=issued)


def forged(signer: ec.EllipticCurvePrivateKey, named_key: ec.EllipticCurvePrivateKey) -> str:
    """A grant signed by ``signer`` that names ``named_key``'s id (a key the tenant trusts) in its header."""
    claims = jwt.decode(grant(), options={"verify_signature": False})
    return jwt.encode(claims, signer, algorithm="ES256",
                      headers={"typ": GRANT_TYPE, "kid": key_id_of(named_key.public_key())})


def asking(token: str = "", **changes: Any) -> DecisionRequest:
    glass = BreakGlass(JUSTIFICATION, SATURDAY + timedelta(minutes=30), token)
    request = replace(REQUEST, context=replace(REQUEST.context, break_glass=glass))
    for part, value in changes.items():
        request = replace(request, **{part: value})
    return request


@pytest.fixture(scope="module")
def approvers_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """carol approves for alpha (grants of at most 30 minutes), dave for beta; mallory for nobody."""
    directory = tmp_path_factory.mktemp("approvers")
    alpha = write_approvers_file(directory / "alpha", max_grant_minutes=30, tenants=("alpha",),
                                 approvers={"carol": CAROL})
    beta = write_approvers_file(directory / "beta", max_grant_minutes=60, tenants=("beta",),
                                approvers={"dave": DAVE})
    tenants = {**yaml.safe_load(alpha.read_text())["tenants"], **yaml.safe_load(beta.read_text())["tenants"]}
    path = directory / "approvers.yaml"
    path.write_text(yaml.safe_dump({"tenants": tenants}))
    return path


@pytest.fixture(scope="module")
async def logged(policy_pool: asyncpg.Pool) -> DecisionLog:
    return DecisionLog(policy_pool, SCHEMA, None, LogSettings(region="region-a", protection=PROTECTION))


@pytest.fixture(scope="module")
def service(engine: OpaEngine, logged: DecisionLog, approvers_file: Path) -> DecisionService:
    return DecisionService(engine, logged, region="region-a", clock=SettableClock(SATURDAY),
                           break_glass=BreakGlassVerifier(load_approvers(approvers_file)))


def uses(check: str, result: Result) -> float:
    return BREAK_GLASS_USES.labels(check, result.value)._value.get()  # type: ignore[attr-defined,no-any-return]


async def test_without_break_glass_the_window_denies(service: DecisionService) -> None:
    decision = await service.decide(REQUEST)
    assert decision.rule_id == "ig.time.outside_window", "the baseline every grant below has to lift"


async def test_a_signed_grant_inside_its_window_allows_and_is_logged_and_published_with_the_approver(
    service: DecisionService, logged: DecisionLog, policy_pool: asyncpg.Pool
) -> None:
    before = uses("verified", Result.ALLOW)
    token = grant()
    decision = await service.decide(asking(token))
    assert (decision.result, decision.rule_id) == (Result.ALLOW, "ig.breakglass.allow")
    assert "approved by 'carol'" in decision.verdict.explanation
    assert decision.verdict.obligations == ("audit:break_glass",)
    assert uses("verified", Result.ALLOW) == before + 1
    await logged.drain()
    row = await policy_pool.fetchval(f"SELECT record FROM {SCHEMA}.decision_log WHERE decision_id = $1",
                                     decision.decision_id)
    record = json.loads(row)
    assert token.split(".")[2] not in row, "the bearer grant itself is never logged, only what was verified"
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    assert record["breakGlass"] == {"approver": "carol", "approverKeyId": key_id_of(CAROL.public_key()),
                                    "jti": jti, "expiresAt": "2026-01-10T12:14:00Z"}
    assert record["input"]["context"]["break_glass"]["verified"]["approver"] == "carol"
    payload = await policy_pool.fetchval(f"SELECT payload FROM {SCHEMA}.outbox WHERE ce_id = $1",
                                         f"evt_{decision.decision_id}")
    event = events_pb2.PolicyDecision.FromString(payload)
    assert (event.break_glass.approver, event.break_glass.approver_key_id, event.break_glass.jti) == (
        "carol", key_id_of(CAROL.public_key()), jti)
    assert event.break_glass.expires_at.ToDatetime(tzinfo=UTC) == datetime(2026, 1, 10, 12, 14, tzinfo=UTC)


# name -> (request, the failed check the metric counts, what the explanation must say)
REFUSED: dict[str, tuple[Callable[[], DecisionRequest], str, str]] = {
    "self-asserted justification and expiry": (lambda: asking(""), "self_asserted",
                                               "signed by an approver the tenant trusts"),
    "expired": (lambda: asking(grant(issued=SATURDAY - timedelta(minutes=20), ttl=timedelta(minutes=15))),
                "expired", "expired at '2026-01-10T11:55:00Z'"),
    "expiring at this very second": (lambda: asking(grant(issued=SATURDAY - timedelta(minutes=15))), "expired",
                                     "expired at '2026-01-10T12:00:00Z'"),
    "wrongly signed (another key, a trusted key's id)": (lambda: asking(forged(MALLORY, CAROL)), "signature",
                                                        "signature does not verify with approver 'carol''s key"),
    "signed by a key nobody trusts": (lambda: asking(grant(MALLORY)), "untrusted_approver",
                                      "not an approver of tenant 'alpha'"),
    "approver of another tenant": (lambda: asking(grant(DAVE, approver="dave")), "untrusted_approver",
                                   "not an approver of tenant 'alpha'"),
    "grant for another tenant": (lambda: asking(grant(tenant="beta")), "tenant",
                                 "is for tenant 'beta', not the resource's tenant 'alpha'"),
    "actor of another tenant": (lambda: asking(grant(), actor=replace(REQUEST.actor, tenant="gamma")), "tenant",
                                "not the actor's tenant 'gamma'"),
    "another subject": (lambda: asking(grant(subject="u-bob")), "subject", "another subject than the actor"),
    "issuer other than the key's approver": (lambda: asking(grant(approver="dave")), "issuer",
                                             "names approver 'dave', but is signed with 'carol''s key"),
    "longer than the tenant's maximum": (lambda: asking(grant(ttl=timedelta(minutes=31))), "lifetime",
                                         "at most '30' minutes"),
    "issued in the future": (lambda: asking(grant(issued=SATURDAY + timedelta(minutes=5))), "not_yet_valid",
                             "after the server's time"),
    "not a JWS": (lambda: asking("not-a-token"), "malformed", "not a compact JWS"),
    "unsigned (alg none)": (lambda: asking(jwt.encode(jwt.decode(grant(), options={"verify_signature": False}),
                                                      None, algorithm="none", headers={"typ": GRANT_TYPE})),
                            "malformed", "alg ES256"),
}


@pytest.mark.parametrize("name", list(REFUSED))
async def test_a_refused_grant_is_denied_naming_the_check(service: DecisionService, name: str) -> None:
    make, check, says = REFUSED[name]
    before = uses(check, Result.DENY)
    decision = await service.decide(make())
    assert decision.result is Result.DENY
    # The primary reason, unless a denial of higher priority also holds (an actor of another tenant: tenant mismatch).
    assert decision.rule_id == ("ig.tenant.mismatch" if name == "actor of another tenant" else "ig.breakglass.invalid")
    assert any(r.rule_id == "ig.breakglass.invalid" and says in r.message for r in decision.verdict.reasons), \
        decision.verdict
    assert "ig.breakglass.allow" not in {r.rule_id for r in decision.verdict.reasons}
    assert uses(check, Result.DENY) == before + 1


async def test_a_verified_grant_opens_only_its_scope(service: DecisionService) -> None:
    export = asking(grant(), action="export")
    before = uses("scope", Result.DENY)
    decision = await service.decide(export)
    assert (decision.result, decision.rule_id) == (Result.DENY, "ig.breakglass.invalid")
    assert uses("scope", Result.DENY) == before + 1
    assert "scope (case 'case-1', read, internal) does not cover this request" in decision.verdict.explanation
    wildcard = {"resource_type": "case", "resource_id": "*", "action": "export", "classification": "*"}
    opened = await service.decide(asking(grant(scope=wildcard), action="export"))
    assert opened.rule_id == "ig.breakglass.allow"


async def test_the_server_clock_judges_the_grant_not_the_request_time(
    engine: OpaEngine, logged: DecisionLog, approvers_file: Path
) -> None:
    late = DecisionService(engine, logged, region="region-a", clock=SettableClock(SATURDAY + timedelta(minutes=20)),
                           break_glass=BreakGlassVerifier(load_approvers(approvers_file)))
    before = uses("expired", Result.DENY)
    decision = await late.decide(asking(grant()))  # the request still says 12:00; the server says 12:20
    assert decision.rule_id == "ig.breakglass.invalid"
    assert "expired at '2026-01-10T12:14:00Z'" in decision.verdict.explanation
    assert uses("expired", Result.DENY) == before + 1, "refused by the service's check, not only by the Rego's"
    early = DecisionService(engine, logged, region="region-a", clock=SettableClock(SATURDAY - timedelta(minutes=10)),
                            break_glass=BreakGlassVerifier(load_approvers(approvers_file)))
    # Issued at 11:58 by the approver's clock: the request says 12:00, but the server says 11:50.
    ahead = await early.decide(asking(grant(issued=SATURDAY - timedelta(minutes=2))))
    assert ahead.rule_id == "ig.breakglass.invalid"
    assert "after the server's time '2026-01-10T11:50:00Z'" in ahead.verdict.explanation


async def test_without_approvers_no_grant_is_accepted(engine: OpaEngine, logged: DecisionLog) -> None:
    unconfigured = DecisionService(engine, logged, region="region-a", clock=SettableClock(SATURDAY))
    decision = await unconfigured.decide(asking(grant()))
    assert decision.rule_id == "ig.breakglass.invalid"
    assert "No break-glass approvers are configured" in decision.verdict.explanation


# The approvers file: every malformed entry stops start-up with a message naming it.

def _entry(tmp_path: Path) -> dict[str, Any]:
    written = yaml.safe_load(write_approvers_file(tmp_path, tenants=("alpha",), approvers={"carol": CAROL})
                             .read_text())
    entry: dict[str, Any] = written["tenants"]["alpha"]["approvers"][0]
    return entry


BAD_FILES: dict[str, tuple[Callable[[dict[str, Any]], Any], str]] = {
    "key id of another key": (
        lambda e: {"tenants": {"alpha": {"maxGrantMinutes": 30, "approvers": [{**e, "keyId": "ab" * 32}]}}},
        "tenants.alpha.approvers[0] (carol): keyId"),
    "no key": (lambda e: {"tenants": {"alpha": {"maxGrantMinutes": 30, "approvers": [{"name": "carol",
                                                                                     "keyId": e["keyId"]}]}}},
               "tenants.alpha.approvers[0] (carol): give exactly one of publicKey"),
    "unreadable key file": (
        lambda e: {"tenants": {"alpha": {"maxGrantMinutes": 30, "approvers": [{**e, "publicKeyPath": "gone.pub"}]}}},
        "tenants.alpha.approvers[0] (carol): publicKeyPath"),
    "not a key": (
        lambda e: {"tenants": {"alpha": {"maxGrantMinutes": 30, "approvers": [
            {"name": "carol", "keyId": e["keyId"], "publicKey": "-----BEGIN PUBLIC KEY-----\nAAAA\n"}]}}},
        "tenants.alpha.approvers[0] (carol): not a PEM public key"),
    "nameless": (lambda e: {"tenants": {"alpha": {"maxGrantMinutes": 30, "approvers": [{**e, "name": ""}]}}},
                 "tenants.alpha.approvers[0]: name is required"),
    "no lifetime": (lambda e: {"tenants": {"alpha": {"approvers": [e]}}}, "tenants.alpha.maxGrantMinutes"),
    "lifetime over a day": (lambda e: {"tenants": {"alpha": {"maxGrantMinutes": 1441, "approvers": [e]}}},
                            "tenants.alpha.maxGrantMinutes"),
    "no approvers": (lambda e: {"tenants": {"beta": {"maxGrantMinutes": 30, "approvers": []}}},
                     "tenants.beta.approvers"),
    "unknown key": (lambda e: {"tenants": {"alpha": {"maxGrantMinutes": 30, "approvers": [{**e, "role": "x"}]}}},
                    "tenants.alpha.approvers[0]: unknown key(s) role"),
    "a list": (lambda e: [e], "tenants: {<tenant>"),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_a_malformed_approvers_file_stops_start_up_naming_the_entry(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str
) -> None:
    make, named = BAD_FILES[name]
    path = tmp_path / "approvers.yaml"
    path.write_text(yaml.safe_dump(make(_entry(tmp_path))))
    monkeypatch.setenv("IG_DATABASE_URL", "postgresql://ig@127.0.0.1:1/ig")
    monkeypatch.setenv("IG_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    monkeypatch.setenv("IG_BREAKGLASS_APPROVERS_PATH", str(path))
    with pytest.raises(SettingsError) as stopped:
        load_settings(Settings)
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert "invalid setting IG_BREAKGLASS_APPROVERS_PATH" in error and named in error, error


def test_a_well_formed_approvers_file_loads(tmp_path: Path) -> None:
    trust = load_approvers(write_approvers_file(tmp_path, max_grant_minutes=45, tenants=("alpha", "gamma"),
                                                approvers={"carol": CAROL}))
    assert set(trust) == {"alpha", "gamma"} and trust["alpha"].max_grant_minutes == 45
    assert trust["gamma"].approvers[0].key_id == key_id_of(CAROL.public_key())


# The grant travels in every API: gRPC Decide (context.break_glass.grant) and AuthZEN (context.break_glass.grant).

@pytest.fixture(scope="module")
async def grpc_stub(service: DecisionService, infra: Any) -> AsyncIterator[policy_pb2_grpc.PolicyServiceStub]:
    port = free_port()
    env = infra.identities.env()
    security = ServerSecurity(WorkloadCertificate(Path(env["IG_IDENTITIES"]) / "policy"),
                              AuthorizationTable.load(Path(env["IG_AUTHZ_TABLE"])))
    server, _ = build_grpc_server([policy_grpc_service(service)], host="127.0.0.1", port=port, security=security)
    await server.start()
    channel = aio_channel_as("gateway", f"127.0.0.1:{port}")
    yield policy_pb2_grpc.PolicyServiceStub(channel)
    await channel.close()
    await server.stop(grace=1)


def _decide_request(token: str) -> policy_pb2.DecideRequest:
    time = Timestamp()
    time.FromDatetime(SATURDAY)
    return policy_pb2.DecideRequest(
        actor=policy_pb2.Actor(id="u-alice", tenant="alpha", roles=["oncall"], purposes=["investigation"]),
        resource=policy_pb2.Resource(type="case", id="case-1", tenant="alpha", purpose="investigation",
                                     region="region-a", classification="internal"),
        action="read",
        context=policy_pb2.Context(time=time, network_zone="corp", device_trust="high", session_risk=10,
                                   auth_level="mfa", region="region-a",
                                   break_glass=policy_pb2.BreakGlass(justification=JUSTIFICATION, grant=token)),
    )


async def test_grpc_carries_the_grant(grpc_stub: policy_pb2_grpc.PolicyServiceStub) -> None:
    allowed = await grpc_stub.Decide(_decide_request(grant()))
    assert (allowed.result, allowed.rule_id) == (policy_pb2.RESULT_ALLOW, "ig.breakglass.allow")
    refused = await grpc_stub.Decide(_decide_request(""))
    assert (refused.result, refused.rule_id) == (policy_pb2.RESULT_DENY, "ig.breakglass.invalid")


async def test_authzen_carries_the_grant(service: DecisionService, infra: Any) -> None:
    env = infra.identities.env()
    policy, gateway = (WorkloadCertificate(Path(env["IG_IDENTITIES"]) / name) for name in ("policy", "gateway"))
    app = build_api_app("policy AuthZEN")
    mount_authzen(app, service)
    guarded = guarded_by_table(app, AuthorizationTable.load(Path(env["IG_AUTHZ_TABLE"])), policy)
    body: dict[str, Any] = {
        "subject": {"type": "user", "id": "u-alice",
                    "properties": {"tenant": "alpha", "roles": ["oncall"], "purposes": ["investigation"]}},
        "resource": {"type": "case", "id": "case-1", "properties": {
            "tenant": "alpha", "purpose": "investigation", "region": "region-a", "classification": "internal"}},
        "action": {"name": "read"},
        "context": {"time": "2026-01-10T13:00:00+01:00", "network_zone": "corp", "device_trust": "high",
                    "session_risk": 10, "auth_level": "mfa", "region": "region-a"},
    }
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=guarded), base_url="http://policy",  # type: ignore[arg-type]
                                 auth=WorkloadTokenAuth(gateway, policy.spiffe_id)) as client:
        body["context"]["break_glass"] = {"grant": grant()}
        allowed = (await client.post("/access/v1/evaluation", json=body)).json()
        body["context"]["break_glass"] = {"justification": JUSTIFICATION, "expires_at": "2026-01-10T12:30:00Z"}
        refused = (await client.post("/access/v1/evaluation", json=body)).json()
    assert allowed["decision"] is True and allowed["context"]["rule_id"] == "ig.breakglass.allow"
    assert refused["decision"] is False and refused["context"]["rule_id"] == "ig.breakglass.invalid"


async def test_the_demo_approver_make_up_creates_signs_grants_the_service_accepts(
    tmp_path: Path, engine: OpaEngine, logged: DecisionLog
) -> None:
    from ig_infra.breakglass_key import APPROVER, breakglass_approver_key, ensure_breakglass_approver

    trust = load_approvers(ensure_breakglass_approver(tmp_path))
    assert [a.name for a in trust["alpha"].approvers] == [APPROVER] and set(trust) == {"alpha"}
    assert ensure_breakglass_approver(tmp_path) and load_approvers(ensure_breakglass_approver(tmp_path)) == trust, \
        "the key is kept across runs"
    key = load_private_key(breakglass_approver_key(tmp_path))
    demo = DecisionService(engine, logged, region="region-a", clock=SettableClock(SATURDAY),
                           break_glass=BreakGlassVerifier(trust))
    decision = await demo.decide(asking(grant(key, approver=APPROVER)))
    assert decision.rule_id == "ig.breakglass.allow" and f"approved by '{APPROVER}'" in decision.verdict.explanation


async def test_every_break_glass_attempt_is_logged_whatever_the_drop_rules_say(
    engine: OpaEngine, policy_pool: asyncpg.Pool, approvers_file: Path
) -> None:
    dropping = DecisionLog(policy_pool, SCHEMA, None, LogSettings(
        region="region-a", protection=PROTECTION,
        drop_rules=parse_drop_rules([{"result": "deny"}, {"result": "allow"}])))
    quiet = DecisionService(engine, dropping, region="region-a", clock=SettableClock(SATURDAY),
                            break_glass=BreakGlassVerifier(load_approvers(approvers_file)))
    ordinary = await quiet.decide(REQUEST)
    refused = await quiet.decide(asking(grant(MALLORY)))
    self_asserted = await quiet.decide(asking(""))
    await dropping.drain()
    ids = [ordinary.decision_id, refused.decision_id, self_asserted.decision_id]
    found = await policy_pool.fetch(
        f"SELECT decision_id, record FROM {SCHEMA}.decision_log WHERE decision_id = ANY($1)", ids)
    records = {r["decision_id"]: json.loads(r["record"]) for r in found}
    assert set(records) == {refused.decision_id, self_asserted.decision_id}, "the ordinary denial is dropped"
    assert "not an approver of tenant 'alpha'" in records[refused.decision_id]["breakGlass"]["rejection"]
    assert records[self_asserted.decision_id]["breakGlass"] == {"rejection": "no signed grant"}


def test_a_tenant_without_approvers_accepts_no_grant(approvers_file: Path) -> None:
    gamma = replace(REQUEST, actor=replace(REQUEST.actor, tenant="gamma"),
                    resource=replace(REQUEST.resource, tenant="gamma"))
    asked = replace(gamma, context=replace(gamma.context, break_glass=BreakGlass(grant=grant(tenant="gamma"))))
    checked = BreakGlassVerifier(load_approvers(approvers_file)).check(asked, SATURDAY)
    assert checked is not None and checked.check == "untrusted_approver"
    assert "not an approver of tenant 'gamma'" in checked.policy_facts["rejection"]
