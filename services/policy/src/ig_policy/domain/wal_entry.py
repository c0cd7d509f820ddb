"""What one write-ahead-log record holds, as bytes: a decision with its policy input (no I/O).

JSON, not pickle: the files outlive the process that wrote them, and a reader must never run what it reads.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from ig_policy.domain.model import Decision, Reason, Result, Verdict


def encode_decision(policy_input: Any, decision: Decision) -> bytes:
    verdict = decision.verdict
    return json.dumps({
        "input": policy_input,
        "id": decision.decision_id,
        "result": verdict.result.value,
        "rule": verdict.rule_id,
        "explanation": verdict.explanation,
        "reasons": [[r.rule_id, r.message] for r in verdict.reasons],
        "obligations": list(verdict.obligations),
        "revision": decision.policy_revision,
        "at": decision.evaluated_at.isoformat(),
        "latency_ms": decision.latency_ms,
        "sensitive": sorted(decision.sensitive_values),
    }, ensure_ascii=False, separators=(",", ":"), default=str).encode()


def decode_decision(payload: bytes) -> tuple[Any, Decision]:
    """The (input, decision) pair ``payload`` holds; ValueError (naming what) when it holds none."""
    try:
        entry = json.loads(payload)
        verdict = Verdict(Result(entry["result"]), entry["rule"], entry["explanation"],
                          tuple(Reason(rule_id, message) for rule_id, message in entry["reasons"]),
                          tuple(entry["obligations"]))
        decision = Decision(entry["id"], verdict, entry["revision"], datetime.fromisoformat(entry["at"]),
                            float(entry["latency_ms"]), frozenset(entry["sensitive"]))
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"not a decision-log WAL entry: {error}") from error
    return entry["input"], decision
