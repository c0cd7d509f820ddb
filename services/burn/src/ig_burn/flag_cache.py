"""The flag set as OFREP serves it: an in-memory snapshot with its ETag, reloaded from PostgreSQL.

Evaluation reads memory only (no database round trip per request); this replica's own changes refresh the
snapshot at once, other replicas' changes within ``refresh_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import structlog

from ig_burn.domain.flags import Flag, flag_set_etag
from ig_burn.store.flags import FlagStore

log = structlog.get_logger(__name__)


class FlagCache:
    def __init__(self, pool: asyncpg.Pool, store: FlagStore) -> None:
        self._pool = pool
        self._store = store
        self.flags: dict[str, Flag] = {}
        self.etag = flag_set_etag([])

    async def refresh(self) -> None:
        async with self._pool.acquire() as conn:
            flags = await self._store.list_flags(conn)
        self.flags = {f.key: f for f in flags}
        self.etag = flag_set_etag(flags)

    async def run(self, stop: asyncio.Event, refresh_seconds: float) -> None:
        while not stop.is_set():
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # keep serving the last snapshot
                log.warning("flag_cache_refresh_failed", error=repr(error))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), refresh_seconds)
