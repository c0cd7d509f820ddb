"""Every request answers within a deadline: when the backends (evidence, ledger, PostgreSQL) are too slow, the
caller gets a prompt 503 instead of waiting on them.

The calls a request makes each have their own timeout (catalog 10 s, ledger append 5 s) or none (PostgreSQL), and
they run one after another, so a slow evidence service could hold a download for far longer than a browser or SDK
waits; a browser's download then never starts at all. Failing closed within one budget keeps the answer bounded.
"""

from __future__ import annotations

import asyncio

import structlog
from ig_common.http_server import problem
from prometheus_client import Counter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger(__name__)
OVERRUNS = Counter("ig_portal_deadline_exceeded_total", "Requests answered 503 because they ran past the deadline")


class RequestDeadline:
    """ASGI middleware (pure ASGI: no per-request task or body copy like Starlette's BaseHTTPMiddleware)."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            async with asyncio.timeout(self.seconds):
                await self.app(scope, receive, send_tracking)
        except TimeoutError:
            if started:  # too late to change the answer; the client sees a cut-off response
                raise
            OVERRUNS.inc()
            log.error("request_deadline_exceeded", path=scope.get("path"), seconds=self.seconds)
            response = problem(503, "backends too slow", f"no answer within {self.seconds:g} s; try again")
            response.headers["Retry-After"] = "1"
            await response(scope, receive, send)
