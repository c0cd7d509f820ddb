"""The benchmark's decision mix as Envoy ext_authz ``Check`` requests, and the route mapping that turns them back
into the same decisions: the tenant, type and id in the path, the rest in headers, the actor as the downstream
peer's principal (no JWT to verify, so the figures compare the protocols, not a signature check)."""

from __future__ import annotations

from typing import Any

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


def check_request(document: dict[str, Any]) -> external_auth_pb2.CheckRequest | None:
    """The Check request for one decision input, or None when a gateway could not say it (break-glass, a tenant
    the gateway is not granted, a value that is not a plain path segment)."""
    actor, resource, context = document["actor"], document["resource"], document["context"]
    if "break_glass" in context or resource["tenant"] not in GATEWAY_TENANTS:
        return None
    if any("/" in str(resource[k]) or not resource[k] for k in ("tenant", "type", "id")):
        return None
    headers = {
        "x-purpose": resource.get("purpose", ""), "x-resource-region": resource.get("region", ""),
        "x-classification": resource.get("classification", ""), "x-actor-tenant": actor.get("tenant", ""),
        "x-roles": ",".join(actor.get("roles", [])), "x-purposes": ",".join(actor.get("purposes", [])),
        "x-action": document.get("action", ""), "x-network-zone": context.get("network_zone", ""),
        "x-device-trust": context.get("device_trust", ""), "x-session-risk": str(context.get("session_risk", 0)),
        "x-auth-level": context.get("auth_level", ""), "x-region": context.get("region", ""),
    }
    attributes = attribute_context_pb2.AttributeContext(
        source=attribute_context_pb2.AttributeContext.Peer(principal=actor["id"]),
        request=attribute_context_pb2.AttributeContext.Request(http=attribute_context_pb2.AttributeContext.HttpRequest(
            method="GET", path=f"/{resource['tenant']}/{resource['type']}/{resource['id']}", host="api.bench",
            headers=headers)))
    return external_auth_pb2.CheckRequest(attributes=attributes)


def rule_id_of(response: external_auth_pb2.CheckResponse) -> str:
    options = response.ok_response.headers if response.HasField("ok_response") else response.denied_response.headers
    return next((o.header.value for o in options if o.header.key == "x-ig-rule-id"), "")
