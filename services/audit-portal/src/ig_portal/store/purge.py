"""Deleting what has expired: sessions past their expiry, sign-ins never finished, and rate-limit buckets that
have refilled completely (a full bucket and a missing one admit exactly the same, so the row is dead weight)."""

from __future__ import annotations

import asyncio

import asyncpg
import structlog

log = structlog.get_logger(__name__)
LOGIN_ATTEMPT_MINUTES = 15


class Purger:
    def __init__(self, pool: asyncpg.Pool, schema: str, interval_seconds: float) -> None:
        self.pool = pool
        self.schema = schema
        self.interval_seconds = interval_seconds

    async def purge(self) -> dict[str, int]:
        """One pass; how many rows of each kind went."""
        s = self.schema
        counts = {}
        for kind, statement in (
                ("sessions", f"DELETE FROM {s}.sessions WHERE expires_at <= now()"),
                ("login_attempts", f"DELETE FROM {s}.login_attempts "
                                   f"WHERE created_at < now() - interval '{LOGIN_ATTEMPT_MINUTES} minutes'"),
                # Tokens now = tokens then + elapsed * rate (capped): full once elapsed >= (capacity - tokens) / rate.
                ("rate_buckets", f"DELETE FROM {s}.rate_buckets WHERE rate > 0 AND updated_at + "
                                 f"make_interval(secs => (capacity - tokens) / rate) <= statement_timestamp()")):
            status = await self.pool.execute(statement)
            counts[kind] = int(status.split()[-1])
        return counts

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_seconds)
            try:
                counts = await self.purge()
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as error:
                log.warning("purge_failed", error=str(error))
                continue
            if any(counts.values()):
                log.info("purged", **counts)
