"""The benchmark's decision mix as a gateway asks it: Envoy ext_authz ``Check`` requests and HTTP forward-auth
calls, and the route mapping that turns both back into the same decisions (the tenant, type and id in the path,
the rest in headers). The actor is the downstream peer's principal for Check, and the subject of a bearer JWT
(ES256, verified by the service) for forward-auth, which has no other principal."""

from __future__ import annotations

import time
from typing import Any

import jwt
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2

CHECK = "/envoy.service.auth.v3.Authorization/Check"
# The tenants the table grants the gateway identity the benchmark calls as (policies/authz/grpc-methods.yaml).
GATEWAY_TENANTS = ("alpha", "beta", "gamma")
ROUTES = [{
    "name": "bench", "path": "/{tenant}/{type}/{id}",
    "fields": {"resource.type": "path:type", "resource.id": "path:id", "resource.tenant": "path:tenant",
               "resource.purpose": "header:x-purpose", "resource.region": "header:x-resource-region",
               "resource.classification": "header:x-classification", "actor.tenant": "header:x-actor-tenant",
               "actor.roles": "header:x-roles", "actor.purposes": "header:x-purposes", "action": "header:x-action",
               "context.network_zone": "header:x-network-zone", "context.device_trust": "header:x-device-trust",
               "context.session_risk": "header:x-session-risk", "context.auth_level": "header:x-auth-level",
               "context.region": "header:x-region"},
}]


JWT_ISSUER, JWT_AUDIENCE = "https://idp.bench", "bench-api"


def _headers(document: dict[str, Any]) -> dict[str, str]:
    actor, resource, context = document["actor"], document["resource"], document["context"]
    return {
        "x-purpose": resource.get("purpose", ""), "x-resource-region": resource.get("region", ""),
        "x-classification": resource.get("classification", ""), "x-actor-tenant": actor.get("tenant", ""),
        "x-roles": ",".join(actor.get("roles", [])), "x-purposes": ",".join(actor.get("purposes", [])),
        "x-action": document.get("action", ""), "x-network-zone": context.get("network_zone", ""),
        "x-device-trust": context.get("device_trust", ""), "x-session-risk": str(context.get("session_risk", 0)),
        "x-auth-level": context.get("auth_level", ""), "x-region": context.get("region", ""),
    }


def _path(document: dict[str, Any]) -> str:
    resource = document["resource"]
    return f"/{resource['tenant']}/{resource['type']}/{resource['id']}"


def sayable(document: dict[str, Any]) -> bool:
    """Whether a gateway could say this input: no break-glass, a tenant the gateway is granted, the resource's
    tenant, type and id plain path segments."""
    resource, context = document["resource"], document["context"]
    if "break_glass" in context or resource["tenant"] not in GATEWAY_TENANTS:
        return False
    return not any("/" in str(resource[k]) or not resource[k] for k in ("tenant", "type", "id"))


def forward_auth_headers(document: dict[str, Any], private_key_pem: bytes) -> dict[str, str]:
    """What nginx's auth subrequest carries for this input, with a bearer JWT valid for an hour."""
    now = int(time.time())
    token = jwt.encode({"iss": JWT_ISSUER, "aud": JWT_AUDIENCE, "sub": document["actor"]["id"], "iat": now,
                        "exp": now + 3600}, private_key_pem, algorithm="ES256")
    return {**_headers(document), "x-forwarded-method": "GET", "x-forwarded-uri": _path(document),
            "x-forwarded-host": "api.bench", "authorization": f"Bearer {token}"}


def check_request(document: dict[str, Any]) -> external_auth_pb2.CheckRequest | None:
    """The Check request for one decision input, or None when a gateway could not say it (break-glass, a tenant
    the gateway is not granted, a value that is not a plain path segment)."""
    if not sayable(document):
        return None
    headers = _headers(document)
    attributes = attribute_context_pb2.AttributeContext(
        source=attribute_context_pb2.AttributeContext.Peer(principal=document["actor"]["id"]),
        request=attribute_context_pb2.AttributeContext.Request(http=attribute_context_pb2.AttributeContext.HttpRequest(
            method="GET", path=_path(document), host="api.bench",
            headers=headers)))
    return external_auth_pb2.CheckRequest(attributes=attributes)


def rule_id_of(response: external_auth_pb2.CheckResponse) -> str:
    options = response.ok_response.headers if response.HasField("ok_response") else response.denied_response.headers
    return next((o.header.value for o in options if o.header.key == "x-ig-rule-id"), "")
