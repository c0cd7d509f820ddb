"""One answer for gateways, whatever protocol they ask in (Envoy ext_authz ``Check``, HTTP forward-auth).

A request a gateway holds -> its route (IG_GATEWAY_ROUTES) -> the verified principal -> a decision request ->
the decision -> what the gateway does: ALLOW forwards with the decision's ids as headers to the upstream; DENY is
403 with the masked explanation; STEP_UP is 401 with an RFC 9470 challenge. No principal is 401; a request no
route maps, or one the mapping cannot fill, is 403 ``ig.input.invalid`` naming what is missing (nginx's
``auth_request`` understands only 2xx, 401 and 403).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import jwt
from prometheus_client import Counter

from ig_policy.decisions import DecisionService, annotate_span
from ig_policy.domain.gateway import (
    GatewayRequest,
    Principal,
    Route,
    decision_request,
    find_route,
    parse_routes,
    step_up_challenge,
)
from ig_policy.domain.losses import DecisionLogUnavailable
from ig_policy.domain.masking import mask_explanation
from ig_policy.domain.model import Result
from ig_policy.domain.validation import validate_request

REFUSED = Counter("ig_policy_gateway_refused_total", "Gateway checks answered without a policy decision",
                  ["protocol", "reason"])
NO_PRINCIPAL = "ig.gateway.no_principal"
INVALID_PRINCIPAL = "ig.gateway.invalid_principal"
TENANT_NOT_GRANTED = "ig.gateway.tenant_not_granted"
INPUT_INVALID = "ig.input.invalid"
DECISION_LOG_UNAVAILABLE = "ig.system.decision_log_unavailable"
UPSTREAM_HEADERS = ("x-ig-decision-id", "x-ig-rule-id", "x-ig-policy-revision")


@dataclass(frozen=True)
class GatewayAnswer:
    status: int  # 200 forward, 401, 403
    rule_id: str
    explanation: str = ""  # masked
    decision_id: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    reason: str = ""  # for the refusal counter when no decision was made

    @property
    def allowed(self) -> bool:
        return self.status == 200

    def body(self) -> str:
        titles = {401: "Unauthorized", 403: "Forbidden"}
        return json.dumps({"type": "about:blank", "title": titles.get(self.status, "OK"), "status": self.status,
                           "detail": self.explanation, "rule_id": self.rule_id,
                           "decision_id": self.decision_id or None})


class JwtPrincipals:
    """End users' bearer JWTs (``Authorization: Bearer``), verified with the issuer's public key."""

    def __init__(self, public_key_file: Path, issuer: str, audience: str) -> None:
        self._key = public_key_file.read_bytes()
        self._issuer = issuer
        self._audience = audience

    def verify(self, token: str) -> Principal:
        claims: dict[str, Any] = jwt.decode(
            token, self._key, algorithms=["ES256", "ES384", "RS256", "PS256", "EdDSA"], audience=self._audience,
            issuer=self._issuer, options={"require": ["exp", "sub", "iss", "aud"]})
        return Principal(str(claims["sub"]), claims)


@dataclass
class GatewayAuthorizer:
    decisions: DecisionService
    routes: tuple[Route, ...]
    jwts: JwtPrincipals | None = None
    protocol: str = "forward_auth"

    def principal(self, request: GatewayRequest, peer_identity: str) -> Principal | GatewayAnswer:
        """The JWT's subject when a bearer token is sent (and verified), else the peer certificate's identity."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if token and scheme.lower() == "bearer" and self.jwts is not None:
            try:
                return self.jwts.verify(token.strip())
            except jwt.PyJWTError as error:
                return self._refuse(401, INVALID_PRINCIPAL, f"the bearer token is not valid: {error}",
                                    'Bearer error="invalid_token"')
        if peer_identity:
            return Principal(peer_identity)
        return self._refuse(401, NO_PRINCIPAL, "no verified principal: send a bearer token or a client certificate",
                            'Bearer realm="ig"')

    async def check(self, request: GatewayRequest, peer_identity: str, caller_tenants: frozenset[str]
                    ) -> GatewayAnswer:
        found = find_route(self.routes, request)
        if found is None:
            return self._refuse(403, INPUT_INVALID, f"no route of IG_GATEWAY_ROUTES maps {request.method} "
                                                    f"{request.path}")
        route, variables = found
        principal = self.principal(request, peer_identity)
        if isinstance(principal, GatewayAnswer):
            return principal
        asked = decision_request(route, variables, request, principal)
        if asked.resource.tenant and asked.resource.tenant not in caller_tenants:
            return self._refuse(403, TENANT_NOT_GRANTED, "the calling gateway may not ask for this tenant")
        # The time the gateway saw the request (Envoy's request.time) must be within the skew; the policy judges at
        # the service's clock either way.
        asked = replace(asked, context=replace(asked.context, time=request.time or self.decisions.now()))
        errors = validate_request(asked) + self.decisions.time_errors(asked)
        if errors:
            fields = "; ".join(str(e) for e in errors[:10])
            return self._refuse(403, INPUT_INVALID, f"route {route.name} cannot fill the decision: {fields}")
        try:
            decision = await self.decisions.decide(asked)
        except DecisionLogUnavailable as error:
            return self._refuse(503, DECISION_LOG_UNAVAILABLE, str(error))
        annotate_span(decision)
        masked = mask_explanation(decision.verdict.explanation, decision.sensitive_values)
        ids = (("x-ig-decision-id", decision.decision_id), ("x-ig-rule-id", decision.rule_id),
               ("x-ig-policy-revision", decision.policy_revision))
        if decision.result is Result.ALLOW:
            return GatewayAnswer(200, decision.rule_id, masked, decision.decision_id, ids)
        if decision.result is Result.STEP_UP:
            challenge = step_up_challenge(decision.verdict.obligations, route.step_up_max_age_s, masked)
            return GatewayAnswer(401, decision.rule_id, masked, decision.decision_id,
                                 (*ids, ("x-ig-explanation", masked), ("www-authenticate", challenge)))
        return GatewayAnswer(403, decision.rule_id, masked, decision.decision_id,
                             (*ids, ("x-ig-explanation", masked)))

    def _refuse(self, status: int, rule_id: str, explanation: str, challenge: str = "") -> GatewayAnswer:
        REFUSED.labels(self.protocol, rule_id).inc()
        # Parts of the explanation come from the request (its path): printable ASCII only in a header.
        printable = "".join(c if " " <= c <= "~" else "?" for c in explanation[:256])
        headers = [("x-ig-rule-id", rule_id), ("x-ig-explanation", printable)]
        if challenge:
            headers.append(("www-authenticate", challenge))
        return GatewayAnswer(status, rule_id, explanation, headers=tuple(headers), reason=rule_id)



def gateway_authorizer(settings: Any, decisions: DecisionService, *, protocol: str) -> GatewayAuthorizer:
    """From the service's Settings (already validated: the routes parse, the JWT settings are complete)."""
    jwts = None
    if settings.gateway_jwt_public_key_file is not None:
        jwts = JwtPrincipals(settings.gateway_jwt_public_key_file, settings.gateway_jwt_issuer,
                             settings.gateway_jwt_audience)
    return GatewayAuthorizer(decisions, parse_routes(settings.gateway_routes), jwts, protocol)
