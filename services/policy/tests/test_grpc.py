"""gRPC PolicyService in-process against the real OPA and PostgreSQL: answers, metadata, field-named errors."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from ig.policy.v1 import policy_pb2, policy_pb2_grpc
from ig_policy.decisions import DecisionService, annotate_span
from ig_policy.domain.model import DecisionRequest
from ig_policy.store.decision_log import DecisionLog
from ig_policy.testing import golden_cases, proto_from_input
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

pytestmark = pytest.mark.integration

BY_NAME = {c.name: c for c in golden_cases()}
ALLOW = proto_from_input(BY_NAME["same tenant and purpose may read"].input)
CROSS_TENANT = proto_from_input(BY_NAME["actor from another tenant is denied"].input)
STEP_UP = proto_from_input(BY_NAME["export from a low-trust device asks for MFA"].input)


def changed(message: policy_pb2.DecideRequest, **fields: object) -> policy_pb2.DecideRequest:
    copy = policy_pb2.DecideRequest()
    copy.CopyFrom(message)
    for path, value in fields.items():
        target = copy
        *parents, last = path.split("__")
        for part in parents:
            target = getattr(target, part)
        if isinstance(value, list):
            del getattr(target, last)[:]
            getattr(target, last).extend(value)
        elif isinstance(value, Timestamp):
            getattr(target, last).CopyFrom(value)
        else:
            setattr(target, last, value)
    return copy


async def test_decide_answers_with_ids_in_body_and_metadata(stub: policy_pb2_grpc.PolicyServiceStub) -> None:
    call = stub.Decide(CROSS_TENANT)
    reply = await call
    metadata = dict(await call.initial_metadata())
    assert reply.result == policy_pb2.RESULT_DENY and reply.rule_id == "ig.tenant.mismatch"
    assert reply.decision_id.startswith("dec_") and len(reply.decision_id) == 36
    assert reply.explanation == reply.reasons[0].message and "'beta'" in reply.explanation
    assert reply.policy_revision.startswith("sha256:") and reply.evaluated_at.seconds > 0
    assert metadata["x-ig-decision-id"] == reply.decision_id
    assert metadata["x-ig-rule-id"] == "ig.tenant.mismatch"
    assert metadata["x-ig-result"] == "DENY"
    assert metadata["x-ig-policy-revision"] == reply.policy_revision
    masked = metadata["x-ig-explanation"]
    assert "cross-tenant" in masked and "alpha" not in masked and "beta" not in masked


async def test_step_up_carries_its_obligation(stub: policy_pb2_grpc.PolicyServiceStub) -> None:
    reply = await stub.Decide(STEP_UP)
    assert reply.result == policy_pb2.RESULT_STEP_UP
    assert list(reply.obligations) == ["step_up:mfa"]


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"actor__id": ""}, "actor.id"),
        ({"actor__roles": ["ok", ""]}, "actor.roles[1]"),
        ({"resource__tenant": ""}, "resource.tenant"),
        ({"resource__classification": ""}, "resource.classification"),
        ({"action": ""}, "action"),
        ({"context__session_risk": -1}, "context.session_risk"),
        ({"context__session_risk": 101}, "context.session_risk"),
        ({"context__network_zone": "mars"}, "context.network_zone"),
        ({"context__device_trust": ""}, "context.device_trust"),
        ({"context__time": Timestamp(seconds=10**12)}, "context.time"),
        ({"context__break_glass__grant": "e" * 9000}, "context.break_glass.grant"),
        ({"actor__id": "x" * 5000}, "actor.id"),
    ],
)
async def test_bad_input_is_invalid_argument_naming_the_field(
    stub: policy_pb2_grpc.PolicyServiceStub, fields: dict[str, object], named: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.Decide(changed(ALLOW, **fields))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"{named}: " in (raised.value.details() or "")


async def test_missing_time_is_named(stub: policy_pb2_grpc.PolicyServiceStub) -> None:
    request = changed(ALLOW)
    request.context.ClearField("time")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.Decide(request)
    assert "context.time: is required" in (raised.value.details() or "")


async def test_many_errors_are_summarised(stub: policy_pb2_grpc.PolicyServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.Decide(policy_pb2.DecideRequest())
    assert "(and " in (raised.value.details() or "") and "actor.id: is required" in (raised.value.details() or "")


async def test_batch_answers_in_order(stub: policy_pb2_grpc.PolicyServiceStub) -> None:
    requests = [ALLOW, CROSS_TENANT, STEP_UP] * 4
    call = stub.BatchDecide(policy_pb2.BatchDecideRequest(requests=requests))
    reply = await call
    metadata = dict(await call.initial_metadata())
    assert [r.rule_id for r in reply.responses] == [
        "ig.purpose.allow_read", "ig.tenant.mismatch", "ig.device.step_up_low_trust"] * 4
    assert len({r.decision_id for r in reply.responses}) == 12
    assert metadata["x-ig-decision-count"] == "12"


async def test_batch_of_the_maximum_size_is_answered(stub: policy_pb2_grpc.PolicyServiceStub) -> None:
    requests = [changed(ALLOW, context__session_risk=i % 101) for i in range(1000)]
    reply = await stub.BatchDecide(policy_pb2.BatchDecideRequest(requests=requests))
    results = [r.result for r in reply.responses]
    assert [r.explanation for r in reply.responses if r.rule_id == "ig.system.engine_unavailable"][:3] == []
    assert len(results) == 1000
    # alpha: < 40 allows, 40..79 steps up, >= 80 denies; the order proves each answer belongs to its request.
    expected = [policy_pb2.RESULT_ALLOW if i % 101 < 40 else policy_pb2.RESULT_STEP_UP if i % 101 < 80
                else policy_pb2.RESULT_DENY for i in range(1000)]
    assert results == expected


@pytest.mark.parametrize(("count", "message"), [(0, "requests: must hold at least one"),
                                                 (1001, "requests: must hold at most 1000")])
async def test_batch_size_is_bounded(stub: policy_pb2_grpc.PolicyServiceStub, count: int, message: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.BatchDecide(policy_pb2.BatchDecideRequest(requests=[ALLOW] * count))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in (raised.value.details() or "")


async def test_batch_names_the_item_and_field(stub: policy_pb2_grpc.PolicyServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.BatchDecide(policy_pb2.BatchDecideRequest(requests=[ALLOW, changed(ALLOW, actor__tenant="")]))
    assert "requests[1].actor.tenant: is required" in (raised.value.details() or "")


async def test_every_decision_reaches_the_log(
    stub: policy_pb2_grpc.PolicyServiceStub, decision_log: DecisionLog, policy_pool: object
) -> None:
    single = await stub.Decide(ALLOW)
    batch = await stub.BatchDecide(policy_pb2.BatchDecideRequest(requests=[CROSS_TENANT, STEP_UP]))
    await decision_log.drain()
    ids = [single.decision_id, *(r.decision_id for r in batch.responses)]
    rows = await policy_pool.fetch(  # type: ignore[attr-defined]
        "SELECT decision_id, result, rule_id, record FROM policy.decision_log WHERE decision_id = ANY($1)", ids)
    assert {r["decision_id"]: (r["result"], r["rule_id"]) for r in rows} == {
        ids[0]: ("allow", "ig.purpose.allow_read"), ids[1]: ("deny", "ig.tenant.mismatch"),
        ids[2]: ("step_up", "ig.device.step_up_low_trust")}


async def test_span_attributes_name_the_decision(decisions: DecisionService) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    from ig_policy.api.translate import request_from_proto

    request: DecisionRequest = request_from_proto(STEP_UP)[0]
    with provider.get_tracer("test").start_as_current_span("Decide"):
        decision = await decisions.decide(request)
        annotate_span(decision)
    (span,) = exporter.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes["ig.decision_id"] == decision.decision_id
    assert span.attributes["ig.rule_id"] == "ig.device.step_up_low_trust"
    assert span.attributes["ig.result"] == "STEP_UP"
