"""ig.policy.v1 messages <-> domain objects."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp
from ig.policy.v1 import policy_pb2

from ig_policy.domain.masking import mask_explanation
from ig_policy.domain.model import Actor, BreakGlass, Context, Decision, DecisionRequest, Resource, Result
from ig_policy.domain.validation import FieldError

_RESULTS = {
    Result.ALLOW: policy_pb2.RESULT_ALLOW,
    Result.DENY: policy_pb2.RESULT_DENY,
    Result.STEP_UP: policy_pb2.RESULT_STEP_UP,
}


def _moment(stamp: Timestamp, field: str, errors: list[FieldError]) -> datetime | None:
    try:
        return stamp.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        errors.append(FieldError(field, "is not a representable timestamp"))
        return None


def request_from_proto(message: policy_pb2.DecideRequest) -> tuple[DecisionRequest, list[FieldError]]:
    """The domain request plus the errors translation itself found (unrepresentable timestamps)."""
    errors: list[FieldError] = []
    context = message.context
    moment = _moment(context.time, "context.time", errors) if context.HasField("time") else None
    grant = None
    if context.HasField("break_glass"):
        expires = context.break_glass.expires_at
        grant = BreakGlass(
            justification=context.break_glass.justification,
            expires_at=_moment(expires, "context.break_glass.expires_at", errors)
            if context.break_glass.HasField("expires_at") else None,
            grant=context.break_glass.grant,
        )
    request = DecisionRequest(
        actor=Actor(message.actor.id, message.actor.tenant, tuple(message.actor.roles), tuple(message.actor.purposes)),
        resource=Resource(message.resource.type, message.resource.id, message.resource.tenant,
                          message.resource.purpose, message.resource.region, message.resource.classification),
        action=message.action,
        context=Context(moment, context.network_zone, context.device_trust, context.session_risk,
                        context.auth_level, context.region, grant),
    )
    return request, errors


def response_from_decision(decision: Decision) -> policy_pb2.DecideResponse:
    verdict = decision.verdict
    evaluated_at = Timestamp()
    evaluated_at.FromDatetime(decision.evaluated_at)
    return policy_pb2.DecideResponse(
        decision_id=decision.decision_id, result=_RESULTS[verdict.result], rule_id=verdict.rule_id,
        explanation=verdict.explanation,
        reasons=[policy_pb2.Reason(rule_id=r.rule_id, message=r.message) for r in verdict.reasons],
        obligations=list(verdict.obligations), policy_revision=decision.policy_revision, evaluated_at=evaluated_at,
    )


def decision_metadata(decision: Decision) -> tuple[tuple[str, str], ...]:
    """Initial metadata a gateway copies into headers; the explanation is masked (no ids, tenants, values)."""
    return (
        ("x-ig-decision-id", decision.decision_id),
        ("x-ig-rule-id", decision.rule_id),
        ("x-ig-result", decision.result.value),
        ("x-ig-explanation", mask_explanation(decision.verdict.explanation, decision.sensitive_values)),
        ("x-ig-policy-revision", decision.policy_revision),
    )
