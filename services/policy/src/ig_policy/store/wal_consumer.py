"""In the writer process: WAL -> PostgreSQL, then acknowledge. Nothing read is dropped; a write that fails is
retried until it succeeds (the WAL keeps the records meanwhile, and the service refuses decisions once it is full).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog
from prometheus_client import Counter, Gauge

from ig_policy.domain.model import Decision
from ig_policy.domain.wal_entry import decode_decision
from ig_policy.store.decision_log import LOG_FAILURES, DecisionLog
from ig_policy.store.wal import Position
from ig_policy.store.wal_tail import Stretch, TornBatch, WalTail

log = structlog.get_logger(__name__)

WAL_REPLAYED = Counter("ig_policy_decision_log_wal_replayed_total",
                       "Decisions a writer found in the WAL when it started (left by a writer or service that died)")
WAL_GAP_RECORDS = Counter("ig_policy_decision_log_wal_gap_records_total",
                          "Decisions a torn or damaged WAL batch announced and did not deliver (recorded as gaps)")
WAL_UNCOUNTABLE = Counter("ig_policy_decision_log_wal_uncountable_total",
                          "WAL batch headers too damaged to count their records (logged; see the README's limits)")
WAL_PENDING_BYTES = Gauge("ig_policy_decision_log_wal_pending_bytes", "WAL bytes not acknowledged by the writer")


class WalConsumer:
    def __init__(self, tail: WalTail, decision_log: DecisionLog, pool: asyncpg.Pool, schema: str, *,
                 batch_size: int, poll_interval: float, max_backoff: float = 5.0) -> None:
        self._tail = tail
        self._log = decision_log
        self._pool = pool
        self._schema = schema
        self._batch_size = batch_size
        self._poll = poll_interval
        self._max_backoff = max_backoff
        self._replay_end: Position | None = None
        self._replayed = 0
        self.consumed = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Take the WAL as it grows; once ``stop`` is set, take what is there and return."""
        await asyncio.to_thread(self._tail.lock)
        try:
            self._replay_end = await asyncio.to_thread(self._tail.end)
            if self._replay_end <= self._tail.cursor:
                self._replay_end = None  # nothing left behind: what comes now is not a replay
            else:
                log.info("decision_log_wal_replay_started", since=_where(self._tail.cursor),
                         until=_where(self._replay_end))
            while True:
                stretch = await asyncio.to_thread(self._tail.read, self._batch_size)
                if stretch.empty:
                    self._replay_done()
                    WAL_PENDING_BYTES.set(await asyncio.to_thread(self._tail.pending_bytes))
                    if stop.is_set():
                        return
                    try:
                        async with asyncio.timeout(self._poll):
                            await stop.wait()
                    except TimeoutError:
                        pass
                    continue
                await self._write(stretch, stop)
        finally:
            self._tail.unlock()

    async def _write(self, stretch: Stretch, stop: asyncio.Event) -> None:
        decisions: list[tuple[Any, Decision]] = []
        torn = list(stretch.torn)
        for payload in stretch.payloads:
            try:
                decisions.append(decode_decision(payload))
            except ValueError as error:  # intact framing around a payload no service writes: counted, not read
                log.error("decision_log_wal_entry_unreadable", error=str(error))
                torn.append(TornBatch(f"wal {stretch.end.segment:020d} unreadable {len(torn)}", 1, True))
        backoff = 0.1
        while True:
            try:
                for batch in torn:
                    await self._record_gap(batch)
                await self._log.write(decisions)
                break
            except (asyncio.CancelledError, KeyboardInterrupt):
                raise
            except Exception as error:
                LOG_FAILURES.inc()
                log.warning("decision_log_write_failed", records=len(decisions), error=str(error) or
                            type(error).__name__)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
        await asyncio.to_thread(self._tail.acknowledge, stretch.end)
        self.consumed += len(decisions)
        if self._replay_end is not None:
            self._replayed += len(decisions)
            WAL_REPLAYED.inc(len(decisions))
            if stretch.end >= self._replay_end:
                self._replay_done()

    def _replay_done(self) -> None:
        if self._replay_end is not None and self._replayed:
            log.warning("decision_log_wal_replayed", decisions=self._replayed)
        self._replay_end = None

    async def _record_gap(self, batch: TornBatch) -> None:
        if not batch.countable:
            WAL_UNCOUNTABLE.inc()
            log.error("decision_log_wal_header_damaged", source=batch.source)
        if batch.records <= 0:
            return
        now = datetime.now(UTC)
        inserted = await self._pool.fetchval(
            f"""INSERT INTO {self._schema}.decision_log_gaps (dropped, first_dropped_at, last_dropped_at, source)
                VALUES ($1, $2, $2, $3) ON CONFLICT (source) DO NOTHING RETURNING id""",
            batch.records, now, batch.source,
        )
        if inserted is not None:
            WAL_GAP_RECORDS.inc(batch.records)
            log.warning("decision_log_wal_torn", records=batch.records, source=batch.source)


def _where(position: Position) -> str:
    return f"segment {position.segment} offset {position.offset}"
