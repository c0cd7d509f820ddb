"""AuthZEN access evaluation endpoints on their own app behind the authorization table, against the real OPA.

In-process (ASGI) as the gateway identity with a real workload token: what is tested here is the API's meaning.
TLS, the client certificate and every refusal are tested over the real service process in
e2e/test_policy_service.py."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from ig_common.authz import AuthorizationTable
from ig_common.authz.http_guard import guarded_by_table
from ig_common.http_client import WorkloadTokenAuth
from ig_common.http_server import build_api_app
from ig_common.tls import WorkloadCertificate
from ig_policy.api.authzen import authzen_field, mount_authzen
from ig_policy.decisions import DecisionService

pytestmark = pytest.mark.integration

EVALUATION: dict[str, Any] = {
    "subject": {"type": "user", "id": "u-alice",
                "properties": {"tenant": "alpha", "roles": ["analyst"], "purposes": ["investigation"]}},
    "resource": {"type": "case", "id": "case-1", "properties": {
        "tenant": "alpha", "purpose": "investigation", "region": "region-a", "classification": "internal"}},
    "action": {"name": "read"},
    "context": {"time": "2026-01-05T11:00:00+01:00", "network_zone": "corp", "device_trust": "high",
                "session_risk": 10, "auth_level": "pwd", "region": "region-a"},
}


def evaluation(**context: Any) -> dict[str, Any]:
    body = copy.deepcopy(EVALUATION)
    body["context"].update(context)
    return body


@pytest.fixture(scope="module")
async def client(decisions: DecisionService, infra: Any) -> AsyncIterator[httpx.AsyncClient]:
    env = infra.identities.env()
    policy, gateway = (WorkloadCertificate(Path(env["IG_IDENTITIES"]) / name) for name in ("policy", "gateway"))
    app = build_api_app("policy AuthZEN")
    mount_authzen(app, decisions)
    guarded = guarded_by_table(app, AuthorizationTable.load(Path(env["IG_AUTHZ_TABLE"])), policy)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=guarded), base_url="http://policy",  # type: ignore[arg-type]
                                 auth=WorkloadTokenAuth(gateway, policy.spiffe_id)) as client:
        yield client


async def test_allow_is_decision_true_with_ids(client: httpx.AsyncClient) -> None:
    reply = await client.post("/access/v1/evaluation", json=EVALUATION)
    assert reply.status_code == 200
    body = reply.json()
    assert body["decision"] is True
    assert body["context"]["rule_id"] == "ig.purpose.allow_read"
    assert reply.headers["x-ig-decision-id"] == body["context"]["decision_id"]
    assert reply.headers["x-ig-rule-id"] == "ig.purpose.allow_read"
    assert "step_up" not in body["context"]


async def test_step_up_is_decision_false_with_step_up_in_context(client: httpx.AsyncClient) -> None:
    reply = await client.post("/access/v1/evaluation", json=evaluation(session_risk=55))
    body = reply.json()
    assert body["decision"] is False
    assert body["context"]["result"] == "STEP_UP"
    assert body["context"]["step_up"] == {"required": True, "obligations": ["step_up:mfa"]}
    assert "'55'" in body["context"]["reason_admin"]["en"]
    assert "55" not in reply.headers["x-ig-explanation"]


async def test_deny_returns_every_reason(client: httpx.AsyncClient) -> None:
    # gamma is pinned to region-b and this service serves region-a (the region the request claims is ignored)
    gamma = evaluation(region="region-b", session_risk=95)
    gamma["subject"]["properties"]["tenant"] = gamma["resource"]["properties"]["tenant"] = "gamma"
    body = (await client.post("/access/v1/evaluation", json=gamma)).json()
    assert body["decision"] is False
    assert [r["rule_id"] for r in body["context"]["reasons"]] == ["ig.residency.cross_region", "ig.risk.too_high"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**EVALUATION, "subject": {"id": "u", "properties": {}}}, "subject.properties.tenant"),
        (evaluation(session_risk=101), "context.session_risk"),
        (evaluation(network_zone="mars"), "context.network_zone"),
        ({**EVALUATION, "action": {"name": ""}}, "action.name"),
    ],
)
async def test_domain_errors_are_problem_json_naming_the_authzen_field(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    reply = await client.post("/access/v1/evaluation", json=body)
    assert reply.status_code == 400
    assert reply.headers["content-type"] == "application/problem+json"
    assert field in reply.json()["fields"]


@pytest.mark.parametrize(
    ("body", "location"),
    [
        (evaluation(session_risk="10"), "body.context.session_risk"),
        (evaluation(time="2026-01-05T10:00:00"), "body.context.time"),
        ({"subject": {"id": 5}}, "body.subject.id"),
    ],
)
async def test_type_errors_are_problem_json(client: httpx.AsyncClient, body: dict[str, Any], location: str) -> None:
    reply = await client.post("/access/v1/evaluation", json=body)
    assert reply.status_code == 400
    assert location in reply.json()["detail"]


async def test_evaluations_inherit_top_level_values_and_keep_order(client: httpx.AsyncClient) -> None:
    body = {**EVALUATION, "evaluations": [
        {"action": {"name": "read"}},
        {"action": {"name": "write"}},
        {"context": {**EVALUATION["context"], "session_risk": 45}},
        {"resource": {"type": "case", "id": "x", "properties": {**EVALUATION["resource"]["properties"],
                                                               "tenant": "beta"}}},
    ]}
    reply = await client.post("/access/v1/evaluations", json=body)
    assert reply.status_code == 200
    answers = reply.json()["evaluations"]
    assert [a["context"]["rule_id"] for a in answers] == [
        "ig.purpose.allow_read", "ig.rbac.action_not_granted", "ig.risk.step_up", "ig.tenant.mismatch"]
    assert [a["decision"] for a in answers] == [True, False, False, False]


async def test_evaluations_without_items_evaluate_the_top_level(client: httpx.AsyncClient) -> None:
    answers = (await client.post("/access/v1/evaluations", json=EVALUATION)).json()["evaluations"]
    assert len(answers) == 1 and answers[0]["decision"] is True


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"evaluations": [{"action": {"name": "read"}}]}, "evaluations[0].subject"),
        ({**EVALUATION, "evaluations": [{"context": {**EVALUATION["context"], "region": ""}}]},
         "evaluations[0].context.region"),
        ({**EVALUATION, "evaluations": [{}] * 1001}, "evaluations"),
        ({**EVALUATION, "options": {"evaluations_semantic": "deny_on_first_deny"}}, "evaluations_semantic"),
    ],
)
async def test_bad_evaluations_are_refused(client: httpx.AsyncClient, body: dict[str, Any], needle: str) -> None:
    reply = await client.post("/access/v1/evaluations", json=body)
    assert reply.status_code == 400
    assert needle in reply.text


def test_field_names_translate_to_authzen() -> None:
    assert authzen_field("actor.roles[2]") == "subject.properties.roles[2]"
    assert authzen_field("context.time") == "context.time"


async def test_a_time_outside_the_servers_skew_is_400_naming_it(client: httpx.AsyncClient) -> None:
    one = await client.post("/access/v1/evaluation", json=evaluation(time="2036-01-05T10:00:00Z"))
    assert one.status_code == 400 and one.json()["fields"] == ["context.time"]
    assert "ahead of the server's clock" in one.json()["detail"]
    many = await client.post("/access/v1/evaluations", json={**EVALUATION, "evaluations": [
        {}, {"context": {**EVALUATION["context"], "time": "2026-01-04T10:00:00Z"}}]})
    assert many.status_code == 400 and many.json()["fields"] == ["evaluations[1].context.time"]
