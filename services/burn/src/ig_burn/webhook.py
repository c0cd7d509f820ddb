"""Deliver Alertmanager-compatible webhook notifications recorded by transitions, signed, retried with backoff.

A pass claims the oldest undelivered notification of each alert group (a short lease, in a short transaction),
sends them concurrently outside any transaction, and records each outcome. Order is kept within a group (an
incident's "resolved" never overtakes its "firing"); one group's failing notification does not hold back another's.
A failure backs off exponentially; a notification refused for good (4xx other than 408/429) or out of attempts is
given up, logged and counted, and its group moves on.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import asyncpg
import httpx
import structlog
from ig_common.lifecycle import wait_at_most
from prometheus_client import Counter

from ig_burn.webhook_signing import WebhookSigner

log = structlog.get_logger(__name__)

DELIVERIES = Counter("ig_burn_webhook_deliveries_total", "Incident webhook delivery attempts, by outcome",
                     ["outcome"])
LEASE = timedelta(seconds=30)  # longer than a send's timeout: a crashed sender's claims lapse and are retried
MAX_BACKOFF_S = 300.0
CLAIM_PER_PASS = 20


def backoff_seconds(attempts: int) -> float:
    """1 s after the first failure, doubling, at most five minutes."""
    return float(min(MAX_BACKOFF_S, 2 ** max(0, attempts - 1)))


def refused_for_good(status: int) -> bool:
    return 400 <= status < 500 and status not in (408, 429)


class WebhookSender:
    def __init__(self, pool: asyncpg.Pool, schema: str, url: str, signer: WebhookSigner, *, max_attempts: int = 20,
                 interval: float = 1.0, timeout: float = 5.0) -> None:
        self._pool = pool
        self._schema = schema
        self._url = url
        self._signer = signer
        self._max_attempts = max_attempts
        self._interval = interval
        self._timeout = timeout
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(timeout=self._timeout) as client:
            while not stop.is_set():
                try:
                    await self.deliver_pending(client)
                except asyncio.CancelledError:
                    raise
                except Exception as error:  # PostgreSQL hiccup: try again next round
                    log.warning("webhook_pass_failed", error=repr(error))
                self._wake.clear()
                await wait_at_most(self._wake, self._interval)

    async def deliver_pending(self, client: httpx.AsyncClient) -> int:
        """One pass; returns how many notifications were delivered."""
        claimed = await self._claim()
        outcomes = await asyncio.gather(*(self._send(client, row) for row in claimed))
        return sum(outcomes)

    async def _claim(self) -> list[asyncpg.Record]:
        s = self._schema
        async with self._pool.acquire() as conn:
            return list(await conn.fetch(
                f"""UPDATE {s}.webhook_deliveries SET claimed_until = now() + $1::interval
                    WHERE id IN (
                        SELECT id FROM {s}.webhook_deliveries
                        WHERE id IN (SELECT min(id) FROM {s}.webhook_deliveries
                                     WHERE delivered_at IS NULL AND gave_up_at IS NULL GROUP BY group_key)
                          AND next_attempt_at <= now() AND (claimed_until IS NULL OR claimed_until < now())
                        ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)
                    RETURNING id, payload::text AS payload, attempts""", LEASE, CLAIM_PER_PASS))

    async def _send(self, client: httpx.AsyncClient, row: asyncpg.Record) -> int:
        body = str(row["payload"]).encode()
        headers = {"Content-Type": "application/json",
                   **self._signer.headers(f"{self._schema}-webhook-{row['id']}", body)}
        status = 0
        try:
            response = await client.post(self._url, content=body, headers=headers)
            status, error = response.status_code, f"HTTP {response.status_code}"
        except httpx.HTTPError as failure:
            error = repr(failure)
        if 200 <= status < 300:
            DELIVERIES.labels("ok").inc()
            await self._pool.execute(f"UPDATE {self._schema}.webhook_deliveries SET delivered_at = now(), "
                                     "attempts = attempts + 1, claimed_until = NULL WHERE id = $1", row["id"])
            return 1
        attempts = int(row["attempts"]) + 1
        give_up = refused_for_good(status) or attempts >= self._max_attempts
        DELIVERIES.labels("gave_up" if give_up else "failed").inc()
        (log.error if give_up else log.warning)(
            "webhook_delivery_gave_up" if give_up else "webhook_delivery_failed", url=self._url, error=error,
            attempts=attempts, alert=json.loads(body).get("status"))
        await self._pool.execute(
            f"""UPDATE {self._schema}.webhook_deliveries SET attempts = $2, last_error = $3, claimed_until = NULL,
                    next_attempt_at = now() + make_interval(secs => $4),
                    gave_up_at = CASE WHEN $5 THEN now() END
                WHERE id = $1""", row["id"], attempts, error, backoff_seconds(attempts), give_up)
        return 0
