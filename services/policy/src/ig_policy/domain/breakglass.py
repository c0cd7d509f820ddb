"""Signed break-glass: what an approver's grant must say, and what the policy is handed once it was verified.

A grant is a compact JWS (``typ`` ``ig-break-glass+jwt``, ES256, ``kid`` = the approver key's id) whose claims
are ``iss`` (the approver's name), ``sub`` (the actor id), ``tenant``, ``scope`` (resource type, resource id,
action, classification; ``*`` opens every value), ``justification``, ``iat``, ``exp`` and ``jti``. The signature is
checked outside (PyJWT); here are the checks of the claims against the trust configuration, the request and the
server's clock. Each refusal says which check failed; the expiry and lifetime sentences are the Rego's own, so the
same grant is explained alike whichever layer refuses it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ig_policy.domain.model import DecisionRequest, rfc3339

GRANT_TYPE = "ig-break-glass+jwt"
ALGORITHM = "ES256"
SCOPE_FIELDS = ("resource_type", "resource_id", "action", "classification")
MAX_GRANT_CHARS = 8192
MAX_JUSTIFICATION = 1024
# An approver's clock may run a little ahead of the service's: a grant issued up to this far in the future counts.
ISSUED_AT_LEEWAY = timedelta(seconds=60)


@dataclass(frozen=True)
class Approver:
    name: str
    key_id: str  # hex SHA-256 of the public key's DER SubjectPublicKeyInfo
    public_key_pem: bytes


@dataclass(frozen=True)
class TenantTrust:
    max_grant_minutes: int
    approvers: tuple[Approver, ...]

    def approver_with(self, key_id: str) -> Approver | None:
        return next((a for a in self.approvers if a.key_id == key_id), None)


@dataclass(frozen=True)
class Rejection:
    """Why a grant was not accepted: ``check`` is a metric label, ``message`` the explanation the policy gives."""

    check: str
    message: str


@dataclass(frozen=True)
class VerifiedGrant:
    approver: str
    approver_key_id: str
    tenant: str
    scope: Mapping[str, str]
    justification: str
    jti: str
    issued_at: datetime
    expires_at: datetime

    def facts(self) -> dict[str, Any]:
        """``input.context.break_glass.verified``: the only break-glass facts the Rego believes."""
        return {
            "approver": self.approver, "approver_key_id": self.approver_key_id, "tenant": self.tenant,
            "scope": dict(self.scope), "justification": self.justification, "jti": self.jti,
            "issued_at": rfc3339(self.issued_at), "expires_at": rfc3339(self.expires_at),
        }


SELF_ASSERTED = Rejection("self_asserted", "")  # the Rego explains a request without a grant itself
NO_APPROVERS = Rejection("no_approvers", "No break-glass approvers are configured, so no grant can be accepted.")


def untrusted(tenant: str, key_id: str) -> Rejection:
    shown = key_id[:16] if key_id else "none"
    return Rejection("untrusted_approver",
                     f"The break-glass grant is signed with key '{shown}', which is not an approver of tenant "
                     f"'{tenant}'.")


def bad_signature(approver: str) -> Rejection:
    return Rejection("signature", f"The break-glass grant's signature does not verify with approver '{approver}''s "
                                  "key.")


def malformed(problem: str) -> Rejection:
    return Rejection("malformed", f"The break-glass grant is malformed: {problem}.")


def parse_scope(text: str) -> dict[str, str]:
    """``resource_type=case,resource_id=*,action=read,classification=internal``: every field named, ``*`` for any
    value (an approver opens everything only by saying so)."""
    scope: dict[str, str] = {}
    for part in text.split(","):
        name, separator, value = part.strip().partition("=")
        if not separator or name not in SCOPE_FIELDS or not value.strip():
            raise ValueError(f"scope: {part.strip()!r} is not one of {', '.join(f + '=<value>' for f in SCOPE_FIELDS)}")
        if name in scope:
            raise ValueError(f"scope: {name} is given twice")
        scope[name] = value.strip()
    missing = [f for f in SCOPE_FIELDS if f not in scope]
    if missing:
        raise ValueError(f"scope: {', '.join(missing)} missing (use * for any value)")
    return scope


def _scope_of(claims: Mapping[str, Any]) -> dict[str, str] | None:
    scope = claims.get("scope")
    if not isinstance(scope, dict):
        return None
    values = {f: scope.get(f) for f in SCOPE_FIELDS}
    if not all(isinstance(v, str) and 0 < len(v) <= 256 for v in values.values()):
        return None
    return {f: str(v) for f, v in values.items()}


def covers(scope: Mapping[str, str], request: DecisionRequest) -> bool:
    """The Rego judges the same (ig.breakglass.in_scope); checked here too, so a grant is refused as a whole."""
    asked = {"resource_type": request.resource.type, "resource_id": request.resource.id, "action": request.action,
             "classification": request.resource.classification}
    return all(scope[f] in ("*", asked[f]) for f in SCOPE_FIELDS)


def scope_problem(scope: Mapping[str, str]) -> str:
    """The Rego's own sentence for a scope that does not cover the request."""
    return (f"The break-glass grant's scope ({scope['resource_type']} '{scope['resource_id']}', {scope['action']}, "
            f"{scope['classification']}) does not cover this request.")


def _instant(value: Any) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def check_claims(claims: Mapping[str, Any], approver: Approver, trust: TenantTrust, request: DecisionRequest,
                 now: datetime) -> VerifiedGrant | Rejection:
    """The claims of a grant whose signature ``approver``'s key verified, against the request and ``now`` (the
    server's clock). ``trust`` is the configuration of the resource's tenant, the one the approver was found in."""
    tenant = request.resource.tenant
    issuer, subject, granted_tenant = claims.get("iss"), claims.get("sub"), claims.get("tenant")
    justification, jti = claims.get("justification"), claims.get("jti")
    issued_at, expires_at = _instant(claims.get("iat")), _instant(claims.get("exp"))
    scope = _scope_of(claims)
    if issued_at is None or expires_at is None:
        return malformed("iat and exp must be whole seconds since the epoch")
    if scope is None:
        return malformed(f"scope must name {', '.join(SCOPE_FIELDS)}")
    if not isinstance(justification, str) or not 0 < len(justification) <= MAX_JUSTIFICATION:
        return malformed(f"justification must be 1 to {MAX_JUSTIFICATION} characters")
    if not isinstance(jti, str) or not 0 < len(jti) <= 128:
        return malformed("jti must be 1 to 128 characters")
    if issuer != approver.name:
        return Rejection("issuer", f"The break-glass grant names approver '{issuer}', but is signed with "
                                   f"'{approver.name}''s key.")
    if granted_tenant != tenant:
        return Rejection("tenant", f"The break-glass grant is for tenant '{granted_tenant}', not the resource's "
                                   f"tenant '{tenant}'.")
    if request.actor.tenant != tenant:
        return Rejection("tenant", f"The break-glass grant is for tenant '{tenant}', not the actor's tenant "
                                   f"'{request.actor.tenant}'.")
    if subject != request.actor.id:
        return Rejection("subject", "The break-glass grant was issued to another subject than the actor.")
    if not covers(scope, request):
        return Rejection("scope", scope_problem(scope))
    if expires_at <= issued_at:
        return malformed("exp must be after iat")
    if expires_at - issued_at > timedelta(minutes=trust.max_grant_minutes):
        return Rejection("lifetime", f"A break-glass grant may last at most '{trust.max_grant_minutes}' minutes.")
    if issued_at > now + ISSUED_AT_LEEWAY:
        return Rejection("not_yet_valid", f"The break-glass grant is issued at '{rfc3339(issued_at)}', after the "
                                          f"server's time '{rfc3339(now)}'.")
    if expires_at <= now:
        return Rejection("expired", f"The break-glass grant expired at '{rfc3339(expires_at)}'.")
    return VerifiedGrant(approver.name, approver.key_id, tenant, scope, justification, jti, issued_at, expires_at)
