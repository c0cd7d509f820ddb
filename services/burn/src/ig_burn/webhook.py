"""Deliver Alertmanager-compatible webhook notifications recorded by transitions, retrying until accepted."""

from __future__ import annotations

import asyncio
import contextlib
import json

import asyncpg
import httpx
import structlog
from prometheus_client import Counter

log = structlog.get_logger(__name__)

DELIVERIES = Counter("ig_burn_webhook_deliveries_total", "Incident webhook deliveries, by outcome", ["outcome"])


class WebhookSender:
    def __init__(self, pool: asyncpg.Pool, schema: str, url: str, *, interval: float = 1.0) -> None:
        self._pool = pool
        self._schema = schema
        self._url = url
        self._interval = interval
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(timeout=5.0) as client:
            while not stop.is_set():
                try:
                    await self.deliver_pending(client)
                except asyncio.CancelledError:
                    raise
                except Exception as error:  # PostgreSQL hiccup: try again next round
                    log.warning("webhook_pass_failed", error=repr(error))
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._interval)

    async def deliver_pending(self, client: httpx.AsyncClient) -> int:
        delivered = 0
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                f"""SELECT id, payload FROM {self._schema}.webhook_deliveries WHERE delivered_at IS NULL
                    ORDER BY id LIMIT 20 FOR UPDATE SKIP LOCKED""")
            for row in rows:
                try:
                    response = await client.post(self._url, content=row["payload"],
                                                  headers={"Content-Type": "application/json"})
                    ok, error = response.status_code < 300, f"HTTP {response.status_code}"
                except httpx.HTTPError as failure:
                    ok, error = False, repr(failure)
                if ok:
                    delivered += 1
                    DELIVERIES.labels("ok").inc()
                    await conn.execute(f"UPDATE {self._schema}.webhook_deliveries SET delivered_at = now(), "
                                       "attempts = attempts + 1 WHERE id = $1", row["id"])
                else:
                    DELIVERIES.labels("failed").inc()
                    log.warning("webhook_delivery_failed", url=self._url, error=error,
                                alert=json.loads(row["payload"]).get("status"))
                    await conn.execute(f"UPDATE {self._schema}.webhook_deliveries SET attempts = attempts + 1, "
                                       "last_error = $2 WHERE id = $1", row["id"], error)
                    break  # keep the order: later notifications wait for this one
        return delivered
