"""Fuzzing: generated and malformed inputs never crash and are never allowed; a saved corpus is replayed.

Against the Rego directly (any JSON can be sent) and through the gRPC service (whatever protobuf can carry).
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ig.policy.v1 import policy_pb2, policy_pb2_grpc
from ig_policy.testing import OpaServer, golden_cases, proto_from_input

pytestmark = pytest.mark.integration

BASE = next(c for c in golden_cases() if c.name == "same tenant and purpose may read").input
CORPUS = json.loads((Path(__file__).parent / "fuzz_corpus.json").read_text(encoding="utf-8"))["cases"]
# No example database: the saved corpus (fuzz_corpus.json) is what CI replays.
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
RESULTS = {"ALLOW", "DENY", "STEP_UP"}


def patched(document: dict[str, Any], path: str, value: Any = None, *, delete: bool = False) -> dict[str, Any]:
    result = copy.deepcopy(document)
    *parents, last = path.split(".")
    target = result
    for key in parents:
        target = target[key]
    if delete:
        target.pop(last, None)
    else:
        target[last] = "x" * 100_000 if value == "HUGE" else value
    return result


@pytest.fixture(scope="module")
def opa(private_opa: OpaServer) -> httpx.Client:
    with httpx.Client(base_url=private_opa.url, headers=private_opa.headers, timeout=20) as client:
        yield client


def decide(opa: httpx.Client, document: Any) -> dict[str, Any]:
    reply = opa.post("/v1/data/ig/ctx/decision", json={"input": document})
    assert reply.status_code == 200, reply.text
    decision = reply.json()["result"]
    assert decision["result"] in RESULTS and decision["reasons"] and isinstance(decision["explanation"], str)
    return decision


def corpus_input(case: dict[str, Any]) -> dict[str, Any]:
    document = BASE
    for path, value in case.get("set", {}).items():
        document = patched(document, path, value)
    for path in case.get("delete", []):
        document = patched(document, path, delete=True)
    return document


@pytest.mark.parametrize("case", CORPUS, ids=[c["note"] for c in CORPUS])
def test_corpus_is_denied_by_the_rego(opa: httpx.Client, case: dict[str, Any]) -> None:
    decision = decide(opa, corpus_input(case))
    assert decision["result"] == "DENY" and decision["rule_id"] == "ig.input.invalid"


# Corpus entries protobuf can carry with their defect intact ("grpc" notes why an entry cannot).
SERVICE_CORPUS = [c for c in CORPUS if "grpc" not in c and proto_from_input(corpus_input(c)) is not None]


def test_the_corpus_reaches_the_service_too() -> None:
    assert len(SERVICE_CORPUS) >= 10


@pytest.mark.parametrize("case", SERVICE_CORPUS, ids=[c["note"] for c in SERVICE_CORPUS])
async def test_corpus_is_refused_by_the_service(stub: policy_pb2_grpc.PolicyServiceStub, case: dict[str, Any]) -> None:
    try:
        reply = await stub.Decide(proto_from_input(corpus_input(case)))
    except grpc.aio.AioRpcError as error:
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        return
    assert reply.result == policy_pb2.RESULT_DENY and reply.rule_id == "ig.input.invalid"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=6,
)

# For each field, values that are always malformed there.
MALFORMED = {
    "actor.id": st.none() | st.integers() | st.just("") | st.text(min_size=257, max_size=300),
    "actor.tenant": st.none() | st.booleans() | st.lists(st.text(), max_size=2),
    "actor.roles": st.text() | st.integers() | st.lists(st.integers(), min_size=1, max_size=3),
    "resource.tenant": st.none() | st.integers() | st.just(""),
    "resource.classification": st.text(max_size=20).filter(
        lambda t: t not in ("public", "internal", "confidential", "restricted")),
    "action": st.text(max_size=20).filter(lambda t: t not in ("read", "write", "export", "delete", "admin")),
    "context.time": st.text(max_size=30).filter(lambda t: not t[:4].isdigit()) | st.integers() | st.none(),
    "context.network_zone": st.text(max_size=20).filter(lambda t: t not in ("corp", "vpn", "public", "unknown")),
    "context.device_trust": st.text(max_size=20).filter(lambda t: t not in ("high", "medium", "low", "unknown")),
    "context.session_risk": st.integers(max_value=-1) | st.integers(min_value=101)
    | st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: f != int(f) if abs(f) < 1e300 else True)
    | st.text() | st.booleans() | st.none(),
    "context.region": st.none() | st.integers() | st.just(""),
}


# Every field above except roles, which may be left out (no roles grant nothing).
REQUIRED = set(MALFORMED) - {"actor.roles"}


@FUZZ
@given(data=st.data())
def test_any_malformed_field_is_denied_as_invalid(opa: httpx.Client, data: st.DataObject) -> None:
    fields = data.draw(st.lists(st.sampled_from(sorted(MALFORMED)), min_size=1, max_size=3, unique=True))
    document = BASE
    for field in fields:
        if field in REQUIRED and data.draw(st.booleans()):
            document = patched(document, field, delete=True)
        else:
            document = patched(document, field, data.draw(MALFORMED[field]))
    decision = decide(opa, document)
    assert decision["result"] == "DENY"
    assert decision["rule_id"] == "ig.input.invalid", decision


@FUZZ
@given(document=json_values)
def test_arbitrary_json_never_crashes_and_is_never_allowed(opa: httpx.Client, document: Any) -> None:
    assert decide(opa, document)["result"] == "DENY"


@FUZZ
@given(tenant=st.text(min_size=1, max_size=300), subject=st.text(min_size=1, max_size=300),
       purpose=st.text(max_size=300))
def test_unicode_and_huge_strings_are_never_allowed_for_unknown_tenants(
    opa: httpx.Client, tenant: str, subject: str, purpose: str
) -> None:
    document = patched(patched(patched(BASE, "actor.tenant", tenant), "resource.tenant", tenant), "actor.id", subject)
    document = patched(document, "resource.purpose", purpose)
    decision = decide(opa, document)
    if tenant not in ("alpha", "beta", "gamma"):
        assert decision["result"] == "DENY"


@FUZZ
@given(moment=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)),
       offset_minutes=st.integers(min_value=-12 * 60, max_value=14 * 60))
def test_the_same_instant_in_any_zone_gets_the_same_decision(
    opa: httpx.Client, moment: datetime, offset_minutes: int
) -> None:
    instant = moment.replace(tzinfo=UTC, microsecond=0)
    local = instant.astimezone(timezone(timedelta(minutes=offset_minutes)))
    in_utc = decide(opa, patched(BASE, "context.time", instant.isoformat().replace("+00:00", "Z")))
    in_zone = decide(opa, patched(BASE, "context.time", local.isoformat()))
    assert (in_utc["result"], in_utc["rule_id"]) == (in_zone["result"], in_zone["rule_id"])


@FUZZ
@given(
    risk=st.integers(min_value=-(2**31), max_value=2**31 - 1),
    seconds=st.integers(min_value=-(2**40), max_value=2**40),
    text=st.text(max_size=400),
)
async def test_the_service_never_fails_on_generated_requests(
    stub: policy_pb2_grpc.PolicyServiceStub, risk: int, seconds: int, text: str
) -> None:
    request = proto_from_input(BASE)
    request.context.session_risk = risk
    request.context.time.seconds = seconds
    request.actor.id = text or "x"
    request.resource.purpose = text
    try:
        reply = await stub.Decide(request)
    except grpc.aio.AioRpcError as error:
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
        return
    assert 0 <= risk <= 100, "out-of-range risk must be refused"
    assert reply.result in (policy_pb2.RESULT_ALLOW, policy_pb2.RESULT_DENY, policy_pb2.RESULT_STEP_UP)
    assert reply.decision_id.startswith("dec_") and reply.rule_id
