"""The access log's feed from the ledger: every ig.audit.access entry, in seq order, resumable and idempotent.

The feed remembers the next seq to ask for (``access_log_feed``) and moves it in the transaction that writes the
page's rows, so after a crash it re-reads at most the page it was on and the rows' seq keys make that a no-op.
It brings in what the requests of this replica did not write themselves (other replicas, entries from before the
projection existed, a request whose row write failed after its ledger append). Entries that are not access
entries are skipped and counted: a bad entry can never stop the feed or a page.
"""

from __future__ import annotations

import asyncio

import asyncpg
import structlog
from prometheus_client import Counter, Gauge

from ig_portal.clients.ledger import AccessLedger, LedgerUnavailable
from ig_portal.domain.access_log import ProjectedAccess, Skipped, project
from ig_portal.store.access_log import insert_rows, insert_skipped

log = structlog.get_logger(__name__)
UNREADABLE = Counter("ig_portal_access_log_unreadable_entries_total",
                     "Ledger entries of the access kind skipped by the access log (unparseable or foreign)")
FED_SEQ = Gauge("ig_portal_access_log_fed_seq", "The last ledger seq the access-log feed has read")


class AccessFeed:
    def __init__(self, pool: asyncpg.Pool, schema: str, ledger: AccessLedger, *, interval: float,
                 page_size: int = 1000) -> None:
        self._pool = pool
        self._schema = schema
        self._ledger = ledger
        self._interval = interval
        self._page_size = page_size

    async def run(self) -> None:
        while True:
            try:
                full = await self.step()
            except (LedgerUnavailable, asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as error:
                log.warning("access_feed_failed", error=str(error))
                full = False
            if not full:
                await asyncio.sleep(self._interval)

    async def step(self) -> bool:
        """Reads and writes one page; True when the page was full (more is waiting)."""
        next_seq = int(await self._pool.fetchval(f"SELECT next_seq FROM {self._schema}.access_log_feed"))
        records = await self._ledger.entries_from(next_seq, self._page_size)
        if not records:
            return False
        projected = [project(r) for r in records]
        rows = [p for p in projected if isinstance(p, ProjectedAccess)]
        skipped = [p for p in projected if isinstance(p, Skipped)]
        async with self._pool.acquire() as conn, conn.transaction():
            await insert_rows(conn, self._schema, rows)
            new_skips = await insert_skipped(conn, self._schema, skipped)
            # GREATEST: two replicas' feeds may race; the position never goes back.
            await conn.execute(f"UPDATE {self._schema}.access_log_feed SET next_seq = GREATEST(next_seq, $1)",
                               records[-1].seq + 1)
        if new_skips:  # each skipped seq is stored once, whichever replica saw it first
            log.info("access_log_skips_recorded", new=new_skips)
        UNREADABLE.inc(len(skipped))  # what this process's feed skipped (a restart re-reads at most one page)
        for skip in skipped:
            log.warning("access_log_entry_skipped", seq=skip.seq, tenant=skip.tenant, reason=skip.reason)
        FED_SEQ.set(records[-1].seq)
        return len(records) == self._page_size
