"""Envoy ext_authz v3 Check through the real generated stubs (xds-protos), in-process against the real OPA and
PostgreSQL: mTLS as the gateway identity, the authorization table, the route mapping, the decision log."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2, external_auth_pb2_grpc
from envoy.type.v3 import http_status_pb2
from google.rpc import code_pb2
from ig_common.authz import AuthorizationTable
from ig_common.grpc_client import aio_channel_as
from ig_common.grpc_server import ServerSecurity, build_grpc_server
from ig_common.tls import WorkloadCertificate
from ig_policy.api.ext_authz import ext_authz_grpc_service
from ig_policy.api.gateway_auth import GatewayAuthorizer, JwtPrincipals
from ig_policy.decisions import DecisionService
from ig_policy.domain.gateway import parse_routes
from ig_policy.store.decision_log import DecisionLog
from ig_policy.testing import free_port

pytestmark = pytest.mark.integration

ISSUER, AUDIENCE = "https://idp.example", "cases-api"
ROUTES = parse_routes([{
    "name": "cases", "path": "/api/{tenant}/cases/{id}",
    "fields": {"resource.type": "const:case", "resource.id": "path:id", "resource.tenant": "path:tenant",
               "resource.purpose": "header:x-purpose", "resource.classification": "const:internal",
               "context.region": "const:region-a", "context.device_trust": "header:x-device-trust",
               "context.session_risk": "header:x-session-risk", "action": "query:action"},
    "zones": {"corp": ["10.0.0.0/8"]},
}, {
    "name": "machines", "path": "/m/{tenant}/cases/{id}",
    "fields": {"resource.type": "const:case", "resource.id": "path:id", "resource.tenant": "path:tenant",
               "actor.tenant": "path:tenant", "actor.roles": "const:analyst", "actor.purposes": "const:investigation",
               "resource.purpose": "const:investigation", "resource.classification": "const:internal",
               "context.region": "const:region-a", "context.network_zone": "const:corp",
               "context.device_trust": "const:high", "context.auth_level": "const:pwd"},
}])


@pytest.fixture(scope="module")
def issuer_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    public = tmp_path_factory.mktemp("idp") / "idp.pub.pem"
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return private, public


def user_token(private: bytes, **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "u-alice", "tenant": "alpha", "roles": ["analyst"],
            "purposes": ["investigation"], "acr": "pwd", "iat": now, "exp": now + 300, **claims}
    return jwt.encode(body, private, algorithm="ES256")


@pytest.fixture(scope="module")
async def server_port(decisions: DecisionService, infra: Any, issuer_key: tuple[bytes, Path]) -> AsyncIterator[int]:
    port = free_port()
    env = infra.identities.env()
    security = ServerSecurity(WorkloadCertificate(Path(env["IG_IDENTITIES"]) / "policy"),
                              AuthorizationTable.load(Path(env["IG_AUTHZ_TABLE"])))
    authorizer = GatewayAuthorizer(decisions, ROUTES, JwtPrincipals(issuer_key[1], ISSUER, AUDIENCE), "ext_authz")
    server, _ = build_grpc_server([ext_authz_grpc_service(authorizer)], host="127.0.0.1", port=port,
                                  security=security)
    await server.start()
    yield port
    await server.stop(grace=1)


@pytest.fixture(scope="module")
async def envoy(server_port: int) -> AsyncIterator[external_auth_pb2_grpc.AuthorizationStub]:
    # As Envoy's ext_authz filter would call it: mTLS with the gateway's workload certificate.
    channel = aio_channel_as("gateway", f"127.0.0.1:{server_port}")
    yield external_auth_pb2_grpc.AuthorizationStub(channel)
    await channel.close()


def check_request(path: str, method: str = "GET", *, token: str = "", principal: str = "",
                  source: str = "10.1.2.3", **headers: str) -> external_auth_pb2.CheckRequest:
    sent = {"x-purpose": "investigation", "x-device-trust": "high", "x-session-risk": "10",
            **{k.replace("_", "-"): v for k, v in headers.items()}}
    if token:
        sent["authorization"] = f"Bearer {token}"
    attributes = attribute_context_pb2.AttributeContext(
        source=attribute_context_pb2.AttributeContext.Peer(principal=principal),
        request=attribute_context_pb2.AttributeContext.Request(http=attribute_context_pb2.AttributeContext.HttpRequest(
            method=method, path=path, host="api.example", headers=sent)))
    attributes.source.address.socket_address.address = source
    return external_auth_pb2.CheckRequest(attributes=attributes)


def headers_of(options: Any) -> dict[str, str]:
    return {option.header.key: option.header.value for option in options}


async def test_allow_is_ok_with_the_decision_ids_for_the_upstream(
    envoy: external_auth_pb2_grpc.AuthorizationStub, issuer_key: tuple[bytes, Path], policy_pool: asyncpg.Pool,
    decision_log: DecisionLog,
) -> None:
    reply = await envoy.Check(check_request("/api/alpha/cases/case-1", token=user_token(issuer_key[0]),
                                            x_ig_decision_id="dec_forged"))
    assert reply.status.code == code_pb2.OK and reply.HasField("ok_response")
    upstream = headers_of(reply.ok_response.headers)
    assert upstream["x-ig-rule-id"] == "ig.purpose.allow_read"
    assert upstream["x-ig-decision-id"].startswith("dec_") and upstream["x-ig-decision-id"] != "dec_forged"
    assert {o.append_action for o in reply.ok_response.headers} == {
        base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD}, "a client's forged x-ig-* header is overwritten"
    await decision_log.drain()  # in-process the log has no writer task: write what was handed to it
    record = await policy_pool.fetchval("SELECT record FROM policy.decision_log WHERE decision_id = $1",
                                        upstream["x-ig-decision-id"])
    assert record is not None, "the decision is in the decision log under the id the upstream got"
    logged = json.loads(record)
    assert logged["input"]["resource"]["id"] == "case-1" and logged["input"]["context"]["network_zone"] == "corp"


async def test_deny_is_403_with_the_masked_explanation(
    envoy: external_auth_pb2_grpc.AuthorizationStub, issuer_key: tuple[bytes, Path]
) -> None:
    reply = await envoy.Check(check_request("/api/alpha/cases/case-1",
                                            token=user_token(issuer_key[0], tenant="beta")))
    assert reply.status.code == code_pb2.PERMISSION_DENIED
    denied = reply.denied_response
    assert denied.status.code == http_status_pb2.Forbidden
    headers = headers_of(denied.headers)
    assert headers["x-ig-rule-id"] == "ig.tenant.mismatch" and headers["x-ig-decision-id"].startswith("dec_")
    assert "cross-tenant" in headers["x-ig-explanation"]
    assert "alpha" not in denied.body and "beta" not in denied.body and "u-alice" not in denied.body
    assert json.loads(denied.body)["rule_id"] == "ig.tenant.mismatch"


async def test_step_up_is_401_with_an_rfc_9470_challenge(
    envoy: external_auth_pb2_grpc.AuthorizationStub, issuer_key: tuple[bytes, Path]
) -> None:
    reply = await envoy.Check(check_request("/api/alpha/cases/case-1", token=user_token(issuer_key[0]),
                                            x_session_risk="50"))
    assert reply.status.code == code_pb2.UNAUTHENTICATED
    assert reply.denied_response.status.code == http_status_pb2.Unauthorized
    challenge = headers_of(reply.denied_response.headers)["www-authenticate"]
    assert challenge.startswith('Bearer error="insufficient_user_authentication", error_description="')
    assert challenge.endswith('acr_values="mfa", max_age=300')
    assert headers_of(reply.denied_response.headers)["x-ig-rule-id"] == "ig.risk.step_up"


async def test_a_request_with_no_principal_is_denied(envoy: external_auth_pb2_grpc.AuthorizationStub) -> None:
    reply = await envoy.Check(check_request("/api/alpha/cases/case-1"))
    assert reply.status.code == code_pb2.UNAUTHENTICATED
    assert reply.denied_response.status.code == http_status_pb2.Unauthorized
    headers = headers_of(reply.denied_response.headers)
    assert headers["x-ig-rule-id"] == "ig.gateway.no_principal" and "x-ig-decision-id" not in headers


async def test_an_expired_or_foreign_token_is_denied(
    envoy: external_auth_pb2_grpc.AuthorizationStub, issuer_key: tuple[bytes, Path]
) -> None:
    expired = user_token(issuer_key[0], exp=int(time.time()) - 5)
    foreign_key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    for token in (expired, user_token(foreign_key), user_token(issuer_key[0], aud="another-api")):
        reply = await envoy.Check(check_request("/api/alpha/cases/case-1", token=token))
        assert reply.denied_response.status.code == http_status_pb2.Unauthorized
        assert headers_of(reply.denied_response.headers)["www-authenticate"] == 'Bearer error="invalid_token"'


async def test_the_peer_certificate_is_a_principal(envoy: external_auth_pb2_grpc.AuthorizationStub) -> None:
    reply = await envoy.Check(check_request("/m/alpha/cases/case-7", principal="spiffe://partner.example/sa/batch"))
    assert reply.status.code == code_pb2.OK
    assert headers_of(reply.ok_response.headers)["x-ig-rule-id"] == "ig.purpose.allow_read"


async def test_a_tenant_the_table_does_not_grant_the_gateway_is_refused(
    envoy: external_auth_pb2_grpc.AuthorizationStub, issuer_key: tuple[bytes, Path]
) -> None:
    reply = await envoy.Check(check_request("/api/delta/cases/case-1",
                                            token=user_token(issuer_key[0], tenant="delta")))
    assert reply.denied_response.status.code == http_status_pb2.Forbidden
    assert headers_of(reply.denied_response.headers)["x-ig-rule-id"] == "ig.gateway.tenant_not_granted"


async def test_a_path_no_route_maps_is_denied_naming_it(
    envoy: external_auth_pb2_grpc.AuthorizationStub, issuer_key: tuple[bytes, Path]
) -> None:
    reply = await envoy.Check(check_request("/admin/users/Zoë\r\nx", token=user_token(issuer_key[0])))
    assert reply.denied_response.status.code == http_status_pb2.Forbidden
    headers = headers_of(reply.denied_response.headers)
    assert headers["x-ig-rule-id"] == "ig.input.invalid"
    assert "GET /admin/users/Zo?" in headers["x-ig-explanation"] and "\r" not in headers["x-ig-explanation"]


async def test_a_field_the_mapping_cannot_fill_is_named(
    envoy: external_auth_pb2_grpc.AuthorizationStub, issuer_key: tuple[bytes, Path]
) -> None:
    reply = await envoy.Check(check_request("/api/alpha/cases/case-1", token=user_token(issuer_key[0]),
                                            x_device_trust="", x_session_risk="lots"))
    explanation = headers_of(reply.denied_response.headers)["x-ig-explanation"]
    assert "context.device_trust: must be one of" in explanation and "context.session_risk" in explanation


async def test_a_workload_the_table_does_not_grant_check_is_refused(server_port: int) -> None:
    async with aio_channel_as("operator", f"127.0.0.1:{server_port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await external_auth_pb2_grpc.AuthorizationStub(channel).Check(check_request("/api/alpha/cases/c"))
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
