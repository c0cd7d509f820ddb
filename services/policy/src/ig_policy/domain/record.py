"""The decision log record: a superset of the brief's schema (decisionId, ruleId, result, explanation, tenant,
purpose, ts) with the pseudonymous subject, keyed input hash, policy revision, latency, reasons, the input (masked
afterwards by the log's rules) and the whole input sealed for the replay tool (``sealedInput``)."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import rfc8785

from ig_policy.domain.model import Decision, rfc3339
from ig_policy.domain.protection import RecordProtection

# Where the C encoder and RFC 8785 could differ: numbers with a fraction or exponent (a false alarm inside a
# string only costs the slower path), and keys beyond ASCII (RFC 8785 sorts them by UTF-16 code units).
_NOT_PLAIN = re.compile(r'\d[.eE]|[^\x00-\x7f]"\s*:')


def canonical_json(document: Any) -> bytes:
    """Canonical JSON (sorted keys, no whitespace, UTF-8): equal documents give equal bytes on any machine. It is
    RFC 8785: documents of ASCII keys, strings and integers (every service input) take the C encoder, which writes
    them identically and fast; anything else goes through the rfc8785 library."""
    try:
        canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                               allow_nan=False, default=_refuse).encode()
        if _NOT_PLAIN.search(canonical.decode()) is None:
            return canonical
    except (TypeError, ValueError):
        pass
    return rfc8785.dumps(document)


def input_hash(document: Any) -> str:
    """sha256 over the canonical input (unkeyed: for comparing documents, never for a log others read)."""
    return "sha256:" + hashlib.sha256(canonical_json(document)).hexdigest()


def _refuse(value: Any) -> Any:
    raise TypeError(f"not JSON: {type(value).__name__}")


def _text_at(document: Any, *path: str) -> str:
    for key in path:
        if not isinstance(document, dict):
            return ""
        document = document.get(key)
    return document if isinstance(document, str) else ""


def break_glass_of(policy_input: Any) -> dict[str, Any] | None:
    """Who approved a break-glass use (name, key id, grant id, expiry), or why its grant was refused; None when
    the request did not ask for break-glass. Taken before any mask rule, so an audit never loses the approver."""
    context = policy_input.get("context") if isinstance(policy_input, dict) else None
    glass = context.get("break_glass") if isinstance(context, dict) else None
    if not isinstance(glass, dict):
        return None
    facts = glass.get("verified")
    if isinstance(facts, dict):
        return {"approver": facts.get("approver"), "approverKeyId": facts.get("approver_key_id"),
                "jti": facts.get("jti"), "expiresAt": facts.get("expires_at")}
    return {"rejection": glass.get("rejection") or "no signed grant"}


def build_log_record(policy_input: Any, decision: Decision, *, region: str,
                     protection: RecordProtection) -> dict[str, Any]:
    """The full record; masking and drop rules are applied by the caller's configuration afterwards.

    The subject and the input hash are keyed (HMAC under the pepper): unkeyed, a reader holding the rest of the
    record could confirm a guessed user id by hashing it."""
    pseudonym = protection.pseudonymize
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
        "subject": pseudonym(f"{_text_at(policy_input, 'actor', 'tenant')}/{_text_at(policy_input, 'actor', 'id')}"),
        "inputHash": pseudonym(canonical_json(policy_input)),
        "policyRevision": decision.policy_revision,
        "latencyMs": round(decision.latency_ms, 3),
        "ts": rfc3339(decision.evaluated_at),
        "region": region,
        "input": policy_input,
        "sealedInput": protection.sealer.seal(policy_input, decision.decision_id),
    } | ({"breakGlass": glass} if (glass := break_glass_of(policy_input)) is not None else {})
