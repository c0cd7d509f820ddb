"""Reading logged decisions for replay: one time range (``ts``, the moment the service answered), optionally one
tenant, in time order, streamed through a server-side cursor so a range of millions never sits in memory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from ig_policy.domain.impact import LoggedDecision

FETCH = 2000


@dataclass(frozen=True)
class LoggedRow:
    decision: LoggedDecision
    sealed_input: str | None


async def logged_decisions(conn: asyncpg.Connection, schema: str, since: datetime, until: datetime,
                           tenant: str | None = None, batch: int = FETCH) -> AsyncIterator[list[LoggedRow]]:
    """Batches of rows with ``since <= ts < until``; must run inside a transaction (the cursor lives in it)."""
    query = f"""SELECT decision_id, tenant, result, rule_id, record->>'sealedInput' AS sealed
                FROM {schema}.decision_log
                WHERE ts >= $1 AND ts < $2 AND ($3::text IS NULL OR tenant = $3)
                ORDER BY ts, decision_id"""
    cursor = await conn.cursor(query, since, until, tenant)
    while rows := await cursor.fetch(batch):
        yield [LoggedRow(LoggedDecision(row["decision_id"], row["tenant"], row["result"], row["rule_id"]),
                         row["sealed"]) for row in rows]
