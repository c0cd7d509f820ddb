"""The HTTP twin of the gRPC interceptor: every request to an internal HTTP API is authorized by the same table.

The listener already required a client certificate of the CA (TLS). Here the caller's identity comes from its
workload token (``Authorization: Bearer``, ig_common.authz.workload_token), and the table's ``http:`` rows decide:
no or invalid token -> 401; an identity the table does not know -> 401; a known identity not granted
"<METHOD> <path>" -> 403 naming the route and the caller. Default deny: a path with no row is refused too, so a
route added without a row can never be reached. Refusals are counted and logged.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import structlog
from cryptography import x509
from prometheus_client import Counter

from ig_common.authz.table import AuthorizationTable, Refusal
from ig_common.authz.workload_token import AUTHORIZATION_HEADER, WorkloadTokenError, WorkloadTokenVerifier
from ig_common.spiffe import SpiffeId
from ig_common.tls import WorkloadCertificate

log = structlog.get_logger(__name__)
REFUSED = Counter("ig_http_authz_refused_total", "Internal HTTP API requests refused by the authorization table",
                  ["route", "reason"])

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# The ASGI scope key under which the verified caller's SPIFFE ID reaches the application.
CALLER_SCOPE_KEY = "ig.caller"
_MISSING_TOKEN = "missing_token"


class WorkloadTokenGuard:
    """ASGI middleware: passes a request on only when its workload token is valid and its route granted."""

    def __init__(self, app: ASGIApp, *, table: AuthorizationTable, verifier: WorkloadTokenVerifier,
                 own: SpiffeId) -> None:
        self._app = app
        self._table = table
        self._verifier = verifier
        self._own = own

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        route = f"{scope['method']} {scope['path']}"
        # The metric's label is a route of the table or "unlisted": a caller must not mint label values at will.
        label = route if route in self._table.http_routes else "unlisted"
        header = _header(scope, b"authorization")
        scheme, _, token = (header or "").partition(" ")
        if not token or scheme.lower() != "bearer":
            await _refuse(send, route, label, _MISSING_TOKEN, 401, "Unauthenticated",
                          f"{AUTHORIZATION_HEADER}: a Bearer workload token is required")
            return
        try:
            caller = self._verifier.verify(token.strip())
        except WorkloadTokenError as error:
            await _refuse(send, route, label, "invalid_token", 401, "Unauthenticated",
                          f"{AUTHORIZATION_HEADER}: invalid workload token: {error}")
            return
        await _admit(self._app, self._table, self._own, caller, route, label, scope, receive, send)


class ClientCertificateGuard:
    """ASGI middleware for a client that cannot sign workload tokens (nginx's ``auth_request``, Caddy, Traefik):
    the caller's identity is the SPIFFE ID of the client certificate the TLS handshake verified against the CA
    (the listener requires one; serve_http(..., expose_client_certificate=True) hands it over), then the same
    table rows decide: an identity the table does not know -> 401, a route not granted -> 403."""

    def __init__(self, app: ASGIApp, *, table: AuthorizationTable, own: SpiffeId) -> None:
        self._app = app
        self._table = table
        self._own = own

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        route = f"{scope['method']} {scope['path']}"
        label = route if route in self._table.http_routes else "unlisted"
        chain = ((scope.get("extensions") or {}).get("tls") or {}).get("client_cert_chain") or []
        caller = _certificate_identity(chain[0]) if chain else None
        if caller is None:
            await _refuse(send, route, label, "no_certificate_identity", 401, "Unauthenticated",
                          "a client certificate with a SPIFFE ID is required")
            return
        await _admit(self._app, self._table, self._own, caller, route, label, scope, receive, send)


async def _admit(app: ASGIApp, table: AuthorizationTable, own: SpiffeId, caller: SpiffeId, route: str, label: str,
                 scope: Scope, receive: Receive, send: Send) -> None:
    """The table's decision for an authenticated caller, however it proved who it is: the request goes on with the
    caller in its scope, or is refused (401 for an identity the table does not know, 403 for a route not granted)."""
    same_domain = caller.trust_domain == own.trust_domain and caller.namespace == own.namespace
    refusal = table.may_request(route, caller.name if same_domain else "")
    if refusal is Refusal.UNKNOWN_IDENTITY:
        await _refuse(send, route, label, refusal.value, 401, "Unauthenticated",
                      f"caller identity {caller} is not known to the authorization table")
        return
    if refusal is Refusal.NOT_GRANTED:
        await _refuse(send, route, label, refusal.value, 403, "Forbidden", f"{route} is not granted to {caller}")
        return
    scope[CALLER_SCOPE_KEY] = caller
    await app(scope, receive, send)


def _certificate_identity(pem: str) -> SpiffeId | None:
    try:
        certificate = x509.load_pem_x509_certificate(pem.encode())
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return None
    for uri in names.get_values_for_type(x509.UniformResourceIdentifier):
        spiffe = SpiffeId.parse(uri)
        if spiffe is not None:
            return spiffe
    return None


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


async def _refuse(send: Send, route: str, label: str, reason: str, status: int, title: str, detail: str) -> None:
    REFUSED.labels(label, reason).inc()
    log.warning("http_request_refused", route=route, reason=reason, status=status, detail=detail)
    body = json.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail}).encode()
    headers = [(b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="ig"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def guarded_by_client_certificate(app: ASGIApp, table: AuthorizationTable, certificate: WorkloadCertificate
                                  ) -> ClientCertificateGuard:
    """``app`` behind the table, the caller known by its verified client certificate."""
    return ClientCertificateGuard(app, table=table, own=certificate.spiffe_id)


def guarded_by_table(app: ASGIApp, table: AuthorizationTable, certificate: WorkloadCertificate) -> WorkloadTokenGuard:
    """``app`` behind the table, accepting workload tokens addressed to ``certificate``'s SPIFFE ID and issued
    by its CA."""
    own = certificate.spiffe_id
    return WorkloadTokenGuard(app, table=table, verifier=WorkloadTokenVerifier(certificate.current().ca_pem, own),
                              own=own)
