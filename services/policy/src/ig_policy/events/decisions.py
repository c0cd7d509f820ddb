"""ig.policy.decisions.v1: one CloudEvent per logged decision, built from the masked log record."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from ig.events.v1 import events_pb2
from ig_common.events.envelope import OutgoingEvent
from ig_common.events.topics import POLICY_DECISIONS

DECISION_EVENT_TYPE = "ig.policy.decision.v1"


def _text(record: dict[str, Any], key: str) -> str:
    value = record.get(key)
    return value if isinstance(value, str) else ""


def _break_glass_use(record: dict[str, Any]) -> events_pb2.BreakGlassUse | None:
    glass = record.get("breakGlass")
    if not isinstance(glass, dict):
        return None
    use = events_pb2.BreakGlassUse(approver=_text(glass, "approver"), approver_key_id=_text(glass, "approverKeyId"),
                                   jti=_text(glass, "jti"), rejection=_text(glass, "rejection"))
    expires = _text(glass, "expiresAt")
    if expires:
        use.expires_at.FromDatetime(datetime.fromisoformat(expires.replace("Z", "+00:00")))
    return use


def decision_event(record: dict[str, Any], *, region: str, evaluated_at: datetime) -> OutgoingEvent:
    ts = Timestamp()
    ts.FromDatetime(evaluated_at)
    latency = record.get("latencyMs")
    payload = events_pb2.PolicyDecision(
        decision_id=_text(record, "decisionId"), rule_id=_text(record, "ruleId"), result=_text(record, "result"),
        explanation=_text(record, "explanation"), tenant=_text(record, "tenant"), purpose=_text(record, "purpose"),
        action=_text(record, "action"), subject_hash=_text(record, "subject"), input_hash=_text(record, "inputHash"),
        policy_revision=_text(record, "policyRevision"),
        latency_ms=float(latency) if isinstance(latency, int | float) else 0.0, ts=ts,
        break_glass=_break_glass_use(record),
    )
    return OutgoingEvent(
        topic=POLICY_DECISIONS, type=DECISION_EVENT_TYPE, source=f"//ig/policy/{region}", payload=payload,
        subject=_text(record, "decisionId"), key=_text(record, "tenant") or None, time=evaluated_at,
        id=f"evt_{_text(record, 'decisionId')}",
    )
