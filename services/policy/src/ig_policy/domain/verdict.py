"""Reading the engine's answer. Anything unexpected becomes a DENY: the engine can never allow by accident."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ig_policy.domain.model import ENGINE_UNAVAILABLE, Reason, Result, Verdict

_RESULTS = {r.value: r for r in Result}


def engine_unavailable(detail: str) -> Verdict:
    """The fail-closed answer when OPA is unreachable, slow, or says nothing usable."""
    message = f"The policy engine could not decide ({detail}), so the request is denied."
    return Verdict(Result.DENY, ENGINE_UNAVAILABLE, message, (Reason(ENGINE_UNAVAILABLE, message),))


def _reason(item: Any) -> Reason | None:
    if not isinstance(item, Mapping):
        return None
    rule_id, message = item.get("rule_id"), item.get("message")
    if isinstance(rule_id, str) and rule_id and isinstance(message, str):
        return Reason(rule_id, message)
    return None


def verdict_from_engine(answer: Any) -> Verdict:
    """``answer`` is the body OPA returned for ``data.ig.ctx.decision``; undefined or malformed means DENY."""
    if not isinstance(answer, Mapping) or "result" not in answer:
        return engine_unavailable("the decision was undefined")
    document = answer["result"]
    if not isinstance(document, Mapping):
        return engine_unavailable("the decision was not an object")
    result = _RESULTS.get(str(document.get("result")))
    raw_reasons = document.get("reasons")
    reasons = [_reason(item) for item in raw_reasons] if isinstance(raw_reasons, list) else []
    rule_id, explanation = document.get("rule_id"), document.get("explanation")
    obligations = document.get("obligations", [])
    if (
        result is None
        or not reasons
        or any(r is None for r in reasons)
        or not isinstance(rule_id, str)
        or not isinstance(explanation, str)
        or not isinstance(obligations, list)
        or not all(isinstance(o, str) for o in obligations)
    ):
        return engine_unavailable("the decision was malformed")
    return Verdict(result, rule_id, explanation, tuple(r for r in reasons if r is not None), tuple(obligations))
