"""Every request answers within a deadline: when the backends (evidence, ledger, PostgreSQL) are too slow, the
caller gets a prompt 503 instead of waiting on them.

The calls a request makes each have their own timeout (catalog 10 s, ledger append 5 s) or none (PostgreSQL), and
they run one after another, so a slow evidence service could hold a download for far longer than a browser or SDK
waits; a browser's download then never starts at all. Failing closed within one budget keeps the answer bounded.
"""

from __future__ import annotations

import asyncio
import time

import structlog
from ig_common.http_server import problem
from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger(__name__)
OVERRUNS = Counter("ig_portal_deadline_exceeded_total", "Requests answered 503 because they ran past the deadline")
# Traces are sampled (IG_TRACE_SAMPLE_RATIO), so every request's status and duration land here, and errors and slow
# requests are logged one by one: none of them depends on its trace having been recorded.
REQUEST_SECONDS = Histogram("ig_portal_http_request_seconds", "Time to answer, by status class", ["status"],
                            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
_STATUS_CLASSES = {n: f"{n}xx" for n in range(1, 6)}


class RequestDeadline:
    """ASGI middleware (pure ASGI: no per-request task or body copy like Starlette's BaseHTTPMiddleware)."""

    def __init__(self, app: ASGIApp, seconds: float, slow_seconds: float = 0.5) -> None:
        self.app = app
        self.seconds = seconds
        self.slow_seconds = slow_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        started = False
        budget: asyncio.Timeout | None = None
        status = 500  # what the client sees when the app raises before answering (ServerErrorMiddleware's 500)

        async def send_tracking(message: Message) -> None:
            nonlocal started, status
            if message["type"] == "http.response.start":
                started, status = True, int(message["status"])
                # The deadline bounds the wait for an answer, not its length: a 1 GiB download streams on.
                if budget is not None:
                    budget.reschedule(None)
            await send(message)

        try:
            async with asyncio.timeout(self.seconds) as budget:
                await self.app(scope, receive, send_tracking)
        except TimeoutError:
            if started:  # too late to change the answer; the client sees a cut-off response
                raise
            OVERRUNS.inc()
            status = 503
            log.error("request_deadline_exceeded", path=scope.get("path"), seconds=self.seconds)
            response = problem(503, "backends too slow", f"no answer within {self.seconds:g} s; try again")
            response.headers["Retry-After"] = "1"
            await response(scope, receive, send)
        finally:
            self._observe(scope, status, time.perf_counter() - began)

    def _observe(self, scope: Scope, status: int, seconds: float) -> None:
        REQUEST_SECONDS.labels(_STATUS_CLASSES.get(status // 100, "other")).observe(seconds)
        if status >= 500:
            log.error("request_failed", method=scope.get("method"), path=scope.get("path"), status=status,
                      seconds=round(seconds, 4))
        elif seconds >= self.slow_seconds:
            log.warning("request_slow", method=scope.get("method"), path=scope.get("path"), status=status,
                        seconds=round(seconds, 4))
