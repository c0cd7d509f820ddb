"""The decision log record: a superset of the brief's schema (decisionId, ruleId, result, explanation, tenant,
purpose, ts) with the hashed subject, input hash, policy revision, latency, reasons and the (masked) input."""

from __future__ import annotations

import hashlib
from typing import Any

import rfc8785

from ig_policy.domain.model import Decision, rfc3339


def input_hash(document: Any) -> str:
    """sha256 over the RFC 8785 canonical JSON of the input: equal inputs hash equal on any machine."""
    return "sha256:" + hashlib.sha256(rfc8785.dumps(document)).hexdigest()


def subject_hash(tenant: str, subject: str) -> str:
    return "sha256:" + hashlib.sha256(f"{tenant}/{subject}".encode()).hexdigest()


def _text_at(document: Any, *path: str) -> str:
    for key in path:
        if not isinstance(document, dict):
            return ""
        document = document.get(key)
    return document if isinstance(document, str) else ""


def build_log_record(policy_input: Any, decision: Decision, *, region: str) -> dict[str, Any]:
    """The full record; masking and drop rules are applied by the caller's configuration afterwards."""
    verdict = decision.verdict
    return {
        "decisionId": decision.decision_id,
        "ruleId": verdict.rule_id,
        "result": verdict.result.value.lower(),
        "explanation": verdict.explanation,
        "reasons": [{"ruleId": r.rule_id, "message": r.message} for r in verdict.reasons],
        "obligations": list(verdict.obligations),
        "tenant": _text_at(policy_input, "resource", "tenant"),
        "purpose": _text_at(policy_input, "resource", "purpose"),
        "action": _text_at(policy_input, "action"),
        "subject": subject_hash(_text_at(policy_input, "actor", "tenant"), _text_at(policy_input, "actor", "id")),
        "inputHash": input_hash(policy_input),
        "policyRevision": decision.policy_revision,
        "latencyMs": round(decision.latency_ms, 3),
        "ts": rfc3339(decision.evaluated_at),
        "region": region,
        "input": policy_input,
    }
