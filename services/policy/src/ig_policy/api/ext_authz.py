"""Envoy's external authorization API: ``envoy.service.auth.v3.Authorization/Check`` (generated stubs: xds-protos).

Envoy, Istio, Envoy Gateway, Gloo and Contour call it for every request they hold. The ``AttributeContext``
(method, path, host, headers, source address and principal, request time) goes through the route mapping
(ig_policy.api.gateway_auth) to a decision: ALLOW -> OK, with ``x-ig-decision-id`` / ``x-ig-rule-id`` /
``x-ig-policy-revision`` set on the request to the upstream (overwriting whatever the client sent under those
names); DENY -> 403; STEP_UP -> 401 with the RFC 9470 challenge. The calling gateway is a workload the table grants
``Check``, and it may ask only for the tenants the table's ``tenants:`` grants it.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any
from urllib.parse import parse_qsl

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2, external_auth_pb2_grpc
from envoy.type.v3 import http_status_pb2
from google.rpc import code_pb2, status_pb2
from ig_common.authz.caller import current_caller
from ig_common.grpc_server import GrpcService

from ig_policy.api.gateway_auth import GatewayAnswer, GatewayAuthorizer
from ig_policy.domain.gateway import GatewayRequest

SERVICE_NAME = external_auth_pb2.DESCRIPTOR.services_by_name["Authorization"].full_name
_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
_RPC_CODES = {200: code_pb2.OK, 401: code_pb2.UNAUTHENTICATED, 403: code_pb2.PERMISSION_DENIED,
              503: code_pb2.UNAVAILABLE}
_HTTP_CODES = {401: http_status_pb2.Unauthorized, 403: http_status_pb2.Forbidden,
               503: http_status_pb2.ServiceUnavailable}


def gateway_request(attributes: attribute_context_pb2.AttributeContext) -> GatewayRequest:
    http = attributes.request.http
    headers = {k.lower(): v for k, v in http.headers.items()}
    for entry in http.header_map.headers:  # when Envoy sends raw headers instead
        headers.setdefault(entry.key.lower(), entry.raw_value.decode("latin-1") if entry.raw_value else entry.value)
    path, _, query = http.path.partition("?")
    time = attributes.request.time.ToDatetime() if attributes.request.HasField("time") else None
    return GatewayRequest(
        method=http.method.upper(), path=path, host=http.host or headers.get(":authority", ""), headers=headers,
        query=dict(parse_qsl(query or http.query)),
        source_address=attributes.source.address.socket_address.address,
        time=time.replace(tzinfo=UTC) if time is not None else None,
    )


def _header(name: str, value: str) -> base_pb2.HeaderValueOption:
    return base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=name, value=value), append_action=_OVERWRITE)


def check_response(answer: GatewayAnswer) -> external_auth_pb2.CheckResponse:
    status = status_pb2.Status(code=_RPC_CODES[answer.status], message=answer.rule_id)
    headers = [_header(name, value) for name, value in answer.headers]
    if answer.allowed:
        return external_auth_pb2.CheckResponse(status=status, ok_response=external_auth_pb2.OkHttpResponse(
            headers=headers))
    return external_auth_pb2.CheckResponse(status=status, denied_response=external_auth_pb2.DeniedHttpResponse(
        status=http_status_pb2.HttpStatus(code=_HTTP_CODES[answer.status]),
        headers=[*headers, _header("content-type", "application/problem+json")], body=answer.body()))


class AuthorizationServicer(external_auth_pb2_grpc.AuthorizationServicer):
    def __init__(self, authorizer: GatewayAuthorizer) -> None:
        self._authorizer = authorizer

    async def Check(self, request: external_auth_pb2.CheckRequest, context: grpc.aio.ServicerContext[Any, Any]
                    ) -> external_auth_pb2.CheckResponse:
        caller = current_caller()
        # The end user's identity from the downstream connection's client certificate, as Envoy verified it.
        answer = await self._authorizer.check(gateway_request(request.attributes),
                                              request.attributes.source.principal, caller.tenants)
        return check_response(answer)


def ext_authz_grpc_service(authorizer: GatewayAuthorizer) -> GrpcService:
    return GrpcService(SERVICE_NAME, AuthorizationServicer(authorizer),
                       external_auth_pb2_grpc.add_AuthorizationServicer_to_server)
