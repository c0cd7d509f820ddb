"""Publishing an access (already in the ledger) on ig.audit.access.v1 through the portal's outbox."""

from __future__ import annotations

import asyncpg
from ig.events.v1 import events_pb2
from ig_common.events.outbox import enqueue

from ig_portal.domain.access import AccessEntry
from ig_portal.events import accessed


async def publish_access(pool: asyncpg.Pool, schema: str, entry: AccessEntry, ledger_seq: int) -> None:
    message = events_pb2.AuditAccess(user=entry.user, tenant=entry.tenant, action=entry.action.value,
                                     object=entry.object, download_id=entry.download_id,
                                     request_sha256=entry.request_sha256, ledger_seq=ledger_seq)
    async with pool.acquire() as conn:
        await enqueue(conn, schema, accessed(message))
