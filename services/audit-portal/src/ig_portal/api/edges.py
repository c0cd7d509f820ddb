"""The portal's edges: security headers on every answer, which proxies may name the client, and no API docs UI
unless asked for."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

# Pages use an inline stylesheet and no script; nothing may frame the portal (clickjacking a download or sign-out).
CONTENT_SECURITY_POLICY = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; "
                           "frame-ancestors 'none'; base-uri 'none'")
HSTS = "max-age=31536000; includeSubDomains"
ALWAYS = ((b"content-security-policy", CONTENT_SECURITY_POLICY.encode()), (b"x-content-type-options", b"nosniff"),
          # Download links carry their signature in the query: never hand them to another site as a referrer.
          (b"referrer-policy", b"no-referrer"), (b"x-frame-options", b"DENY"))
DOCS_PATHS = ("/docs", "/docs/oauth2-redirect", "/redoc")


class SecurityHeaders:
    """Pure ASGI: adds the headers to every response's start, errors and 503s included; a header the route set
    itself is kept. HSTS only when the request came over TLS (directly, or per a trusted proxy's
    X-Forwarded-Proto): over plain HTTP a browser ignores it anyway."""

    def __init__(self, app: ASGIApp, exempt_paths: tuple[str, ...] = ()) -> None:
        self.app = app
        self.exempt_paths = exempt_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = list(ALWAYS)
        if scope.get("path") in self.exempt_paths:  # the docs UI loads its script from a CDN
            extra = [h for h in extra if h[0] != b"content-security-policy"]
        if scope.get("scheme") == "https":
            extra.append((b"strict-transport-security", HSTS.encode()))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend(h for h in extra if h[0] not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def trusted_proxies(value: str) -> list[str]:
    """``IG_FORWARDED_ALLOW_IPS``: comma-separated addresses or networks whose X-Forwarded-For/-Proto count."""
    return [part.strip() for part in value.split(",") if part.strip()]


def harden(app: FastAPI, *, forwarded_allow_ips: str, docs_enabled: bool) -> None:
    """Add the edge middleware (call after the others: the last added runs first) and drop the docs UI."""
    if not docs_enabled:
        app.router.routes[:] = [r for r in app.router.routes if getattr(r, "path", None) not in DOCS_PATHS]
    app.add_middleware(SecurityHeaders, exempt_paths=DOCS_PATHS if docs_enabled else ())
    proxies = trusted_proxies(forwarded_allow_ips)
    if proxies:
        # Outermost: the client address and scheme are settled before the rate limiter or HSTS look at them.
        # Without trusted proxies nothing is installed and the socket peer is the client (uvicorn's own proxy
        # handling is off for every service, see ig_common.http_server.serve_http).
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=proxies)
