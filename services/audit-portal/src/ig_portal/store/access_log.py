"""The access log's projection in PostgreSQL: written from ledger entries (idempotent by seq), searched by index.

Two writers feed it the same rows: the request that appended an access (in the outbox's batch transaction, so a
page shows the caller's own access at once) and the ledger feed (``store.access_feed``), which reads every access
entry from the ledger in seq order and so also brings in other replicas' entries and anything a crash lost. A row
is keyed by its ledger seq: whoever writes it second changes nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from ig_portal.domain.access import AccessEntry
from ig_portal.domain.access_log import LedgerRecord, LogFilter, ProjectedAccess, Skipped, parse_at

Executor = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy | asyncpg.Pool

COLUMNS = ("seq, tenant, user_id, email, action, status, object, release, download_id, request_sha256, at, "
           "ledger_ts, subject, prev_hash, entry_hash, payload")


Position = tuple[datetime, int]  # (at, seq) of a row: pages continue below it


@dataclass(frozen=True)
class LogRow:
    """A row as read back: the access and the ledger fields that prove it."""

    record: LedgerRecord
    entry: AccessEntry

    @property
    def seq(self) -> int:
        return self.record.seq

    @property
    def entry_hash(self) -> str:
        return self.record.entry_hash

    @property
    def position(self) -> Position:
        return parse_at(self.entry.at), self.record.seq


def row_values(row: ProjectedAccess) -> tuple[Any, ...]:
    e, r = row.entry, row.record
    return (r.seq, e.tenant, e.user, e.email, e.action.value, e.status, e.object, e.release, e.download_id,
            e.request_sha256, row.at, r.ts, r.subject, r.prev_hash, r.entry_hash, r.payload)


async def insert_rows(conn: Executor, schema: str, rows: Sequence[ProjectedAccess]) -> None:
    if rows:
        await conn.executemany(
            f"""INSERT INTO {schema}.access_log ({COLUMNS})
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
                ON CONFLICT (seq) DO NOTHING""", [row_values(r) for r in rows])


async def insert_skipped(conn: Executor, schema: str, skipped: Sequence[Skipped]) -> int:
    """Records skipped entries; returns how many were new (each is counted once, whichever replica saw it)."""
    if not skipped:
        return 0
    inserted = await conn.fetch(
        f"""INSERT INTO {schema}.access_log_skipped (seq, tenant, reason)
            SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[]) ON CONFLICT (seq) DO NOTHING RETURNING seq""",
        [s.seq for s in skipped], [s.tenant for s in skipped], [s.reason for s in skipped])
    return len(inserted)


def _row(r: asyncpg.Record) -> LogRow:
    record = LedgerRecord(seq=r["seq"], ts=r["ledger_ts"], kind="ig.audit.access", subject=r["subject"],
                          payload=bytes(r["payload"]), prev_hash=r["prev_hash"], entry_hash=r["entry_hash"])
    # The columns were projected from this payload: reading it back keeps one source for what a row says.
    return LogRow(record, AccessEntry.from_payload(record.payload))


def _where(tenant: str, log_filter: LogFilter, below: Position | None, at_most_seq: int | None
           ) -> tuple[str, list[Any]]:
    clauses, args = ["tenant = $1"], list[Any]([tenant])

    def add(clause: str, value: Any) -> None:
        args.append(value)
        clauses.append(clause.replace("?", f"${len(args)}"))

    if log_filter.user:
        # A subject (Dex's `sub`) has no '@'; an e-mail address does: one indexed column either way, not an OR.
        add("email = ?" if "@" in log_filter.user else "user_id = ?", log_filter.user)
    if log_filter.action:
        add("action = ?", log_filter.action)
    if log_filter.release:
        add("release = ?", log_filter.release)
    if log_filter.outcome:
        clauses.append("status >= 400" if log_filter.outcome == "refused" else "status < 400")
    if log_filter.since:
        add("at >= ?", log_filter.since)
    if log_filter.until:
        add("at < ?", log_filter.until)
    if below is not None:
        args.extend(below)
        clauses.append(f"(at, seq) < (${len(args) - 1}, ${len(args)})")
    if at_most_seq is not None:
        add("seq <= ?", at_most_seq)
    return " AND ".join(clauses), args


class AccessLogStore:
    def __init__(self, pool: asyncpg.Pool, schema: str) -> None:
        self._pool = pool
        self._schema = schema

    async def search(self, tenant: str, log_filter: LogFilter, *, below: Position | None, limit: int
                     ) -> tuple[list[LogRow], bool]:
        """One page, newest first, and whether more follow."""
        where, args = _where(tenant, log_filter, below, None)
        rows = await self._pool.fetch(
            f"SELECT {COLUMNS} FROM {self._schema}.access_log WHERE {where} ORDER BY at DESC, seq DESC "
            f"LIMIT {int(limit) + 1}", *args)
        return [_row(r) for r in rows[:limit]], len(rows) > limit

    async def pages(self, tenant: str, log_filter: LogFilter, *, below: Position | None, at_most_seq: int,
                    page_size: int = 500) -> AsyncIterator[list[LogRow]]:
        """Every matching row at or below ``at_most_seq``, newest first, a page at a time (keyset, no OFFSET and
        no server-side cursor held across the stream)."""
        while True:
            where, args = _where(tenant, log_filter, below, at_most_seq)
            rows = await self._pool.fetch(
                f"SELECT {COLUMNS} FROM {self._schema}.access_log WHERE {where} ORDER BY at DESC, seq DESC "
                f"LIMIT {int(page_size)}", *args)
            if not rows:
                return
            yield [_row(r) for r in rows]
            if len(rows) < page_size:
                return
            below = (rows[-1]["at"], rows[-1]["seq"])

    async def skipped(self, tenant: str) -> int:
        return int(await self._pool.fetchval(
            f"SELECT count(*) FROM {self._schema}.access_log_skipped WHERE tenant = $1", tenant))
