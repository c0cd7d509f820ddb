"""Publishing accesses (already in the ledger) on ig.audit.access.v1 through the portal's outbox, and writing their
access-log rows (``store.access_log``) in the same transaction.

Rows are written in batches (``store.batching``): one transaction and one WAL flush for all the accesses that
arrived while the previous batch committed. Each request still returns only after its own row committed, and
a failed commit fails the request (the guard answers 503): nothing is acknowledged before it is durable.
"""

from __future__ import annotations

from collections.abc import Callable

import asyncpg
from ig.events.v1 import events_pb2
from ig_common.events.envelope import OutgoingEvent
from ig_common.events.outbox import enqueue_many

from ig_portal.domain.access import AccessEntry
from ig_portal.domain.access_log import LedgerRecord, ProjectedAccess, parse_at
from ig_portal.events import accessed
from ig_portal.store.access_log import insert_rows
from ig_portal.store.batching import Batcher


def access_event(entry: AccessEntry, ledger_seq: int) -> OutgoingEvent:
    return accessed(events_pb2.AuditAccess(user=entry.user, tenant=entry.tenant, action=entry.action.value,
                                           object=entry.object, download_id=entry.download_id,
                                           request_sha256=entry.request_sha256, ledger_seq=ledger_seq))


class AccessOutbox:
    def __init__(self, pool: asyncpg.Pool, schema: str, on_commit: Callable[[], None] = lambda: None) -> None:
        self._pool = pool
        self._schema = schema
        self._on_commit = on_commit
        self._batches: Batcher[tuple[OutgoingEvent, ProjectedAccess], None] = Batcher("outbox", self._write)

    async def publish(self, entry: AccessEntry, ledger: LedgerRecord) -> None:
        """Returns once the access event and the access-log row are committed; raises what the commit raised."""
        row = ProjectedAccess(ledger, entry, parse_at(entry.at))
        await self._batches.submit((access_event(entry, ledger.seq), row))

    async def run(self) -> None:
        await self._batches.run()

    async def _write(self, items: list[tuple[OutgoingEvent, ProjectedAccess]]) -> list[None]:
        # One transaction for the batch's events and rows: a page read after the answer shows the access.
        async with self._pool.acquire() as conn, conn.transaction():
            # A refused attempt is in the ledger and the log, but is no access: nothing is published for it.
            await enqueue_many(conn, self._schema, [event for event, row in items if row.entry.status < 400])
            await insert_rows(conn, self._schema, [row for _, row in items])
        self._on_commit()
        return [None] * len(items)
