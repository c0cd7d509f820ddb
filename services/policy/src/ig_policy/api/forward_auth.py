"""HTTP forward-auth for gateways that ask over HTTP: nginx ``auth_request``, Caddy ``forward_auth``, Traefik
``ForwardAuth``. ``GET /forward-auth`` with the original request described in headers (``X-Forwarded-Method``,
``X-Forwarded-Uri``, ``X-Forwarded-Host``, ``X-Forwarded-For``, and the client's own headers, ``Authorization``
included); the same route mapping and answers as Envoy's ``Check``: 200 with ``X-IG-Decision-Id`` /
``X-IG-Rule-Id`` for the upstream, 403 with the masked explanation, 401 with the RFC 9470 challenge, each also in
``X-IG-*`` headers because nginx drops the body of an auth subrequest.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from fastapi import APIRouter, FastAPI, Request, Response
from ig_common.authz.http_guard import CALLER_SCOPE_KEY
from ig_common.authz.table import AuthorizationTable
from ig_common.spiffe import SpiffeId

from ig_policy.api.gateway_auth import GatewayAuthorizer
from ig_policy.domain.gateway import GatewayRequest

FORWARD_AUTH_PATH = "/forward-auth"


def forwarded_request(request: Request) -> GatewayRequest:
    headers = {k.lower(): v for k, v in request.headers.items()}
    uri = headers.get("x-forwarded-uri") or headers.get("x-original-uri") or "/"
    path, _, query = uri.partition("?")
    method = headers.get("x-forwarded-method") or headers.get("x-original-method") or "GET"
    source = (headers.get("x-forwarded-for") or "").split(",")[0].strip() or headers.get("x-real-ip", "")
    return GatewayRequest(method=method.upper(), path=path, host=headers.get("x-forwarded-host", ""),
                          headers=headers, query=dict(parse_qsl(query)), source_address=source)


def mount_forward_auth(app: FastAPI, authorizer: GatewayAuthorizer, table: AuthorizationTable) -> None:
    router = APIRouter(tags=["forward-auth"])

    @router.get(FORWARD_AUTH_PATH, summary="May the described request pass? (nginx auth_request, Caddy, Traefik)")
    async def forward_auth(request: Request) -> Response:
        caller: SpiffeId = request.scope[CALLER_SCOPE_KEY]
        answer = await authorizer.check(forwarded_request(request), "", table.tenants_of(caller.name))
        headers = dict(answer.headers)
        if answer.allowed:
            return Response(status_code=200, headers=headers)
        return Response(answer.body(), status_code=answer.status, headers=headers,
                        media_type="application/problem+json")

    app.include_router(router)
