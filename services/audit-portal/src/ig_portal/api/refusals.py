"""Refused attempts go into the access log too: a signed-in caller answered 403, 404 or 429 is recorded in the
ledger with the status, before the refusal leaves.

Only a caller the guard has identified (verified token or session) is recorded: the tenant of the log comes from
that identity. A 401 has none (no token, a forged or expired one): it names no tenant whose log could show it, and
recording it would let anyone write to the ledger; it is counted in ``ig_portal_refused_total`` and logged. A
caller over its rate limit is recorded once per ``THROTTLE_SECONDS`` per replica (the rest are counted), so a
flood of refused requests does not become a flood of ledger appends.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import structlog
from fastapi import HTTPException, Request
from prometheus_client import Counter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ig_portal.domain.access import Action
from ig_portal.domain.identity import Principal
from ig_portal.domain.names import InvalidName, check_release

if TYPE_CHECKING:
    from ig_portal.api.guard import Guard

log = structlog.get_logger(__name__)
RECORDED_STATUSES = (403, 404, 429)
THROTTLE_SECONDS = 10.0
NOT_RECORDED = Counter("ig_portal_refusals_not_recorded_total",
                       "Refused attempts of signed-in callers not written to the access log", ["reason"])


def attempted_action(path: str) -> Action:
    if path.startswith(("/audit/files/", "/audit/manifest/", "/audit/kit/")):
        return Action.DOWNLOAD
    if path.startswith(("/audit/access-log/export", "/audit/access-logs")):
        return Action.EXPORT
    return Action.READ if path.startswith("/audit/") else Action.VIEW


class RecordRefusals:
    """Pure ASGI, inside the exception handlers (it sees the final status) and outside the routes."""

    def __init__(self, app: ASGIApp, guard: Guard) -> None:
        self.app = app
        self.guard = guard
        self._last_throttled: dict[str, float] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_after_recording(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] in RECORDED_STATUSES:
                principal = scope.get("state", {}).get("ig_principal")
                if isinstance(principal, Principal):
                    await self.record(scope, principal, int(message["status"]))
            await send(message)

        await self.app(scope, receive, send_after_recording)

    async def record(self, scope: Scope, principal: Principal, status: int) -> None:
        if status == 429 and not self._first_in_window(f"{principal.tenant}/{principal.user}"):
            NOT_RECORDED.labels("throttled").inc()
            return
        path = str(scope.get("path", ""))[:200]
        try:  # only a well-formed name goes into the subject; the path shows what was asked for
            release = check_release(str(scope.get("path_params", {}).get("release", "")))
        except InvalidName:
            release = ""
        try:
            await self.guard.record(Request(scope), principal, attempted_action(path), f"refused:{path}",
                                    release=release, status=status)
        except HTTPException as error:  # the ledger is down: the refusal still goes out, and is counted
            NOT_RECORDED.labels("ledger_unavailable").inc()
            log.warning("refusal_not_recorded", status=status, path=path, error=error.detail)

    def _first_in_window(self, key: str) -> bool:
        now = time.monotonic()
        if now - self._last_throttled.get(key, -THROTTLE_SECONDS) < THROTTLE_SECONDS:
            return False
        if len(self._last_throttled) > 10_000:  # bounded: forget windows that are over
            self._last_throttled = {k: t for k, t in self._last_throttled.items() if now - t < THROTTLE_SECONDS}
        self._last_throttled[key] = now
        return True
