"""The flag set as OFREP serves it: an in-memory snapshot with its ETag, reloaded from PostgreSQL.

Evaluation reads memory only (no database round trip, no JSON encoding per request: the answers are serialised
once per flag-set change); this replica's own changes refresh the snapshot at once, other replicas' changes within
``refresh_seconds``.
"""

from __future__ import annotations

import asyncio

import asyncpg
import structlog
from ig_common.lifecycle import wait_at_most

from ig_burn.domain.flags import Flag, OfrepSnapshot, flag_set_etag
from ig_burn.store.flags import FlagStore

log = structlog.get_logger(__name__)


class FlagCache:
    def __init__(self, pool: asyncpg.Pool, store: FlagStore) -> None:
        self._pool = pool
        self._store = store
        self.flags: dict[str, Flag] = {}
        self.ofrep = OfrepSnapshot.of([])

    @property
    def etag(self) -> str:
        return self.ofrep.etag

    async def refresh(self) -> None:
        async with self._pool.acquire() as conn:
            flags = await self._store.list_flags(conn)
        if flag_set_etag(flags) == self.ofrep.etag:  # nothing changed: keep the serialised answers
            return
        self.flags = {f.key: f for f in flags}
        self.ofrep = OfrepSnapshot.of(flags)  # one assignment: a request sees the old set or the new, never a mix

    async def run(self, stop: asyncio.Event, refresh_seconds: float) -> None:
        while not stop.is_set():
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # keep serving the last snapshot
                log.warning("flag_cache_refresh_failed", error=repr(error))
            await wait_at_most(stop, refresh_seconds)
