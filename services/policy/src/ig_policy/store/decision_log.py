"""The decision log: decisions queue in memory and are written in batches, off the response path.

``submit`` never waits: it puts the decision on a bounded queue. A writer task takes up to ``batch_size`` at a
time (or whatever arrived within ``flush_ms``), builds the records, applies drop and mask rules, and in ONE
transaction inserts the rows and enqueues their ig.policy.decisions.v1 events in the outbox, so Kafka being down
loses nothing. When the queue is full (PostgreSQL slow or down for long) the decision is still answered, the
record is counted as dropped (metric + a row in decision_log_gaps once the writer catches up) and a warning is
logged: never silent. Writes are idempotent (ON CONFLICT on the decision id), so a retried batch is safe.

The service itself does not use the queue any more: its writer process takes decisions from the write-ahead log
(``ig_policy.store.wal_consumer``) and calls ``write`` directly, so that nothing is held only in memory. The queue
remains for in-process use (the API tests' sink).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog
from ig_common.events.outbox import OutboxRelay, enqueue_many
from prometheus_client import Counter, Gauge

from ig_policy.domain.losses import Gap, LossTally
from ig_policy.domain.masking import DropRule, MaskRule, apply_masks
from ig_policy.domain.model import Decision
from ig_policy.domain.protection import RecordProtection
from ig_policy.domain.record import build_log_record
from ig_policy.events.decisions import decision_event

log = structlog.get_logger(__name__)

LOG_WRITTEN = Counter("ig_policy_decision_log_written_total", "Decision records written (with their event)")
LOG_FILTERED = Counter("ig_policy_decision_log_filtered_total", "Decision records left out by a drop rule")
LOG_DROPPED = Counter("ig_policy_decision_log_dropped_total", "Decision records lost to a full queue (overload)")
LOG_FAILURES = Counter("ig_policy_decision_log_write_failures_total", "Batch writes that failed and were retried")
LOG_QUEUE = Gauge("ig_policy_decision_log_queue", "Decisions waiting to be written")
# Records built between two turns of the event loop (~0.1 ms each): requests wait for at most one chunk.
_CHUNK = 8


@dataclass(frozen=True)
class LogSettings:
    region: str
    # The pepper for pseudonyms and the replay key's public half: every record needs both (no default, fail closed).
    protection: RecordProtection
    mask_rules: tuple[MaskRule, ...] = ()
    drop_rules: tuple[DropRule, ...] = ()
    queue_size: int = 20_000
    batch_size: int = 500
    flush_interval: float = 0.2
    max_backoff: float = 5.0


class DecisionLog:
    def __init__(self, pool: asyncpg.Pool, schema: str, relay: OutboxRelay | None, settings: LogSettings) -> None:
        self._pool = pool
        self._schema = schema
        self._relay = relay
        self._settings = settings
        self._queue: asyncio.Queue[tuple[Any, Decision]] = asyncio.Queue(maxsize=settings.queue_size)
        self._losses = LossTally()
        self._batch: list[tuple[Any, Decision]] = []
        self.written = 0

    def submit(self, policy_input: Any, decision: Decision) -> bool:
        """Queue a decision for the log; False (and counted) when the queue is full."""
        try:
            self._queue.put_nowait((policy_input, decision))
        except asyncio.QueueFull:
            LOG_DROPPED.inc()
            if self._losses.add(1, datetime.now(UTC)):
                log.warning("decision_log_overloaded", queue_size=self._settings.queue_size)
            return False
        LOG_QUEUE.set(self._queue.qsize())
        return True

    async def record(self, policy_input: Any, decision: Decision) -> None:
        """The in-process sink (tests): queued, not durable; an overflow is counted as a gap, as ``submit``."""
        self.submit(policy_input, decision)

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    @property
    def unsettled(self) -> int:
        """Decisions submitted and neither written, filtered nor counted as dropped yet."""
        return self._queue.qsize() + len(self._batch)

    def record_loss(self, gap: Gap) -> None:
        """Decisions lost before they reached this log (and counted where they were lost): record the gap."""
        self._losses.add(gap.count, gap.first, gap.last)

    async def run(self, stop: asyncio.Event) -> None:
        """Write batches until ``stop``; on stop or cancellation, write what is still queued."""
        try:
            while not stop.is_set():
                await self._collect_batch()
                if self._batch:
                    await self._write_with_retry(self._batch, stop)
                    self._batch = []
        except asyncio.CancelledError:
            await self.drain()
            raise
        await self.drain()

    async def drain(self) -> None:
        """Write everything taken or queued now (shutdown, tests); a final failure is counted as lost."""
        while self._batch or not self._queue.empty():
            self._batch = self._batch or self._take(self._settings.batch_size)
            try:
                await self.write(self._batch)
            except Exception as error:
                LOG_DROPPED.inc(len(self._batch))
                log.error("decision_log_lost_on_shutdown", records=len(self._batch), error=str(error))
            self._batch = []

    async def _collect_batch(self) -> None:
        """Fill ``self._batch`` (kept on the instance so a cancellation mid-collection loses nothing)."""
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that races a queued item.
        try:
            async with asyncio.timeout(self._settings.flush_interval):
                self._batch.append(await self._queue.get())
        except TimeoutError:
            return
        # Linger once instead of waking for every decision: the writer shares the event loop with the requests.
        if self._queue.qsize() + len(self._batch) < self._settings.batch_size:
            await asyncio.sleep(self._settings.flush_interval)
        self._batch += self._take(self._settings.batch_size - len(self._batch))

    def _take(self, limit: int) -> list[tuple[Any, Decision]]:
        taken: list[tuple[Any, Decision]] = []
        while len(taken) < limit and not self._queue.empty():
            taken.append(self._queue.get_nowait())
        LOG_QUEUE.set(self._queue.qsize())
        return taken

    async def _write_with_retry(self, batch: list[tuple[Any, Decision]], stop: asyncio.Event) -> None:
        backoff = 0.1
        while True:
            try:
                await self.write(batch)
                return
            except (asyncio.CancelledError, KeyboardInterrupt):
                raise
            except Exception as error:
                LOG_FAILURES.inc()
                log.warning("decision_log_write_failed", records=len(batch), error=str(error) or type(error).__name__)
                if stop.is_set():
                    LOG_DROPPED.inc(len(batch))
                    log.error("decision_log_lost_on_shutdown", records=len(batch), error=str(error))
                    return
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._settings.max_backoff)

    def records(self, batch: Sequence[tuple[Any, Decision]]) -> list[tuple[dict[str, Any], Decision]]:
        kept = []
        for policy_input, decision in batch:
            record = build_log_record(policy_input, decision, region=self._settings.region,
                                      protection=self._settings.protection)
            # Break-glass use, and every attempt at it, is always logged, whatever the drop rules say.
            audited = "audit:break_glass" in decision.verdict.obligations or "breakGlass" in record
            if not audited and any(rule.drops(record) for rule in self._settings.drop_rules):
                LOG_FILTERED.inc()
                continue
            kept.append((apply_masks(record, self._settings.mask_rules, self._settings.protection.pseudonymize),
                         decision))
        return kept

    async def write(self, batch: Sequence[tuple[Any, Decision]]) -> None:
        # One data key per batch for the sealed inputs, forgotten once the batch is built (protection.py).
        sealer = self._settings.protection.sealer
        sealer.new_key()
        try:
            await self._write(batch)
        finally:
            sealer.new_key()

    async def _write(self, batch: Sequence[tuple[Any, Decision]]) -> None:
        kept: list[tuple[dict[str, Any], Decision]] = []
        texts: list[str] = []
        for start in range(0, len(batch), _CHUNK):
            # The writer shares the event loop with the requests: a whole batch of records built in one go holds
            # every request that arrives meanwhile for milliseconds, which is the decision latency's p95.
            chunk = self.records(batch[start:start + _CHUNK])
            kept += chunk
            texts += [json.dumps(record, ensure_ascii=False) for record, _ in chunk]
            await asyncio.sleep(0)
        gap = self._losses.pending
        if not kept and gap is None:
            return
        async with self._pool.acquire() as conn, conn.transaction():
            inserted: set[str] = set()
            if kept:
                rows = await conn.fetch(
                    f"""INSERT INTO {self._schema}.decision_log
                          (decision_id, ts, result, rule_id, tenant, action, policy_revision, record)
                        SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[],
                                             $6::text[], $7::text[], $8::jsonb[])
                        ON CONFLICT (decision_id) DO NOTHING RETURNING decision_id""",
                    [d.decision_id for _, d in kept], [d.evaluated_at for _, d in kept],
                    [d.verdict.result.value.lower() for _, d in kept], [d.verdict.rule_id for _, d in kept],
                    [str(r.get("tenant", "")) for r, _ in kept], [str(r.get("action", "")) for r, _ in kept],
                    [d.policy_revision for _, d in kept], texts,
                )
                inserted = {row["decision_id"] for row in rows}
                events = []
                for index, (record, decision) in enumerate(kept):
                    if decision.decision_id in inserted:
                        events.append(decision_event(record, region=self._settings.region,
                                                     evaluated_at=decision.evaluated_at))
                    if index % _CHUNK == _CHUNK - 1:
                        await asyncio.sleep(0)
                await enqueue_many(conn, self._schema, events)
            if gap is not None:
                await conn.execute(
                    f"""INSERT INTO {self._schema}.decision_log_gaps (dropped, first_dropped_at, last_dropped_at)
                        VALUES ($1, $2, $3)""", gap.count, gap.first, gap.last,
                )
        if gap is not None:
            self._losses.settle(gap)
            log.warning("decision_log_gap_recorded", dropped=gap.count)
        LOG_WRITTEN.inc(len(inserted))
        self.written += len(inserted)
        if self._relay is not None and inserted:
            self._relay.wake()
