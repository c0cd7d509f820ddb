"""The access log's feed from the ledger: each configured tenant's ig.audit.access entries, in seq order, resumable
and idempotent.

The ledger returns one tenant's entries per read (to the portal as itself: the table's ``ledger_readers``), so the
feed reads tenant by tenant and remembers, per tenant, the next seq to ask for (``access_log_feed_tenants``; a
tenant without a row starts at the single position ``access_log_feed`` kept before). It moves a tenant's position in
the transaction that writes the page's rows, so after a crash it re-reads at most the page it was on and the rows'
seq keys make that a no-op. A tenant the ledger refuses (not granted, say) is logged and skipped; the others go on.
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
# No tenant label (/metrics answers whoever reaches the health port): the log lines name the tenant.
FED_SEQ = Gauge("ig_portal_access_log_fed_seq",
                "The ledger seq up to which the access-log feed has read every tenant it reads")
FEED_REFUSED = Counter("ig_portal_access_log_feed_failed_total",
                       "Reads of a tenant's access entries the ledger refused or did not answer")


class AccessFeed:
    def __init__(self, pool: asyncpg.Pool, schema: str, ledger: AccessLedger, *, tenants: tuple[str, ...],
                 interval: float, page_size: int = 1000) -> None:
        if not tenants:
            log.warning("access_feed_off", detail="IG_ACCESS_LOG_FEED_TENANTS names no tenant served here: the access "
                        "log holds only the rows this portal's requests wrote")
        self._tenants = tenants
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
        """Reads and writes one page of each tenant; True when a page was full (more is waiting)."""
        full = False
        for tenant in self._tenants:
            try:
                full = await self._step(tenant) or full
            except LedgerUnavailable as error:
                FEED_REFUSED.inc()
                log.warning("access_feed_failed", tenant=tenant, error=str(error))
        if self._tenants:
            lowest = await self._pool.fetchval(
                f"""SELECT min(coalesce(t.next_seq, g.next_seq)) FROM unnest($1::text[]) AS u(tenant)
                    LEFT JOIN {self._schema}.access_log_feed_tenants t USING (tenant)
                    CROSS JOIN {self._schema}.access_log_feed g""", list(self._tenants))
            FED_SEQ.set(int(lowest) - 1)
        return full

    async def _step(self, tenant: str) -> bool:
        next_seq = int(await self._pool.fetchval(
            f"""SELECT coalesce((SELECT next_seq FROM {self._schema}.access_log_feed_tenants WHERE tenant = $1),
                                (SELECT next_seq FROM {self._schema}.access_log_feed))""", tenant))
        records = await self._ledger.entries_from(tenant, next_seq, self._page_size)
        if not records:
            return False
        projected = [project(r, recorded_for=tenant) for r in records]
        rows = [p for p in projected if isinstance(p, ProjectedAccess)]
        skipped = [p for p in projected if isinstance(p, Skipped)]
        async with self._pool.acquire() as conn, conn.transaction():
            await insert_rows(conn, self._schema, rows)
            new_skips = await insert_skipped(conn, self._schema, skipped)
            # GREATEST: two replicas' feeds may race; the position never goes back.
            await conn.execute(
                f"""INSERT INTO {self._schema}.access_log_feed_tenants AS f (tenant, next_seq) VALUES ($1, $2)
                    ON CONFLICT (tenant) DO UPDATE SET next_seq = GREATEST(f.next_seq, EXCLUDED.next_seq)""",
                tenant, records[-1].seq + 1)
        if new_skips:  # each skipped seq is stored once, whichever replica saw it first
            log.info("access_log_skips_recorded", new=new_skips)
        UNREADABLE.inc(len(skipped))  # what this process's feed skipped (a restart re-reads at most one page)
        for skip in skipped:
            log.warning("access_log_entry_skipped", seq=skip.seq, tenant=skip.tenant, reason=skip.reason)
        return len(records) == self._page_size
