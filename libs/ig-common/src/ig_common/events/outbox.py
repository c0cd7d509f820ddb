"""Transactional outbox: ``enqueue`` inside the caller's transaction, ``OutboxRelay`` publishes afterwards.

The relay takes unpublished rows in id order with ``FOR UPDATE SKIP LOCKED`` (so replicas share the work), sends
them with an idempotent producer, waits for every acknowledgement and only then marks them published. If Kafka
is down nothing is marked and the rows wait; a crash between send and mark can publish a row twice, which is
why consumers deduplicate on ``ce_id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Sequence
from typing import Any

import asyncpg
import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from opentelemetry import propagate, trace
from prometheus_client import Counter, Gauge

from ig_common.events.envelope import OutgoingEvent, to_kafka_record
from ig_common.events.kafka_tls import SslContextSource, client_security

log = structlog.get_logger(__name__)

OUTBOX_PUBLISHED = Counter("ig_outbox_published_total", "Events relayed from the outbox to Kafka", ["schema"])
OUTBOX_FAILURES = Counter("ig_outbox_relay_failures_total", "Relay attempts that failed", ["schema"])
OUTBOX_BACKLOG = Gauge("ig_outbox_backlog", "Unpublished events seen by the relay's last pass", ["schema"])

Executor = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
_YIELD_EVERY = 8
_TRACER = trace.get_tracer("ig_common.outbox")
_PARTITIONER = DefaultPartitioner()


class _RecordBatches:
    """A pass's rows as Kafka record batches, one open batch per topic partition, handed over whole.

    The producer's per-message ``send`` (a future, a partitioner call and OpenTelemetry's wrapper each) cost more
    CPU than building the records; a batch per partition costs one of each. Partitions are chosen exactly as
    ``send`` would (aiokafka's default partitioner: murmur2 of the key), so a key's events keep their partition
    and order; keyless events of one pass share one random partition.
    """

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer
        self._partition_of: dict[tuple[str, bytes | None], int] = {}
        self._open: dict[tuple[str, int], Any] = {}
        self._deliveries: list[asyncio.Future[Any]] = []

    async def publish(self, rows: Sequence[asyncpg.Record], trace_headers: list[tuple[str, bytes]]) -> None:
        for index, row in enumerate(rows):
            key, value, headers = to_kafka_record(
                ce_id=row["ce_id"], ce_type=row["ce_type"], source=row["ce_source"],
                subject=row["ce_subject"], time=row["ce_time"], key=row["message_key"], data=row["payload"],
            )
            await self._add(row["topic"], key, value, headers + trace_headers)
            if index % _YIELD_EVERY == _YIELD_EVERY - 1:
                # Appending to a batch never suspends, so a large pass would hold the event loop (and every
                # request of the service sharing it) for milliseconds.
                await asyncio.sleep(0)
        for (topic, partition), batch in self._open.items():
            if batch.record_count():
                self._deliveries.append(await self._producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*self._deliveries)  # every batch acknowledged, or the pass fails and nothing is marked

    async def _add(self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        partition = self._partition_of.get((topic, key))
        if partition is None:
            partitions = sorted(await self._producer.partitions_for(topic))
            partition = self._partition_of[(topic, key)] = _PARTITIONER(key, partitions, partitions)
        batch = self._open.get((topic, partition))
        if batch is None:
            batch = self._open[(topic, partition)] = self._producer.create_batch()
        if batch.append(key=key, value=value, timestamp=None, headers=headers) is not None:
            return
        self._deliveries.append(await self._producer.send_batch(batch, topic, partition=partition))
        batch = self._open[(topic, partition)] = self._producer.create_batch()
        if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
            raise ValueError(f"outbox event for {topic} does not fit in an empty record batch ({len(value)} bytes)")


async def enqueue(conn: Executor, schema: str, event: OutgoingEvent) -> str:
    """Record ``event`` in ``schema``'s outbox; call it in the same transaction as the state change."""
    await enqueue_many(conn, schema, [event])
    return event.id


async def enqueue_many(conn: Executor, schema: str, events: Sequence[OutgoingEvent]) -> None:
    await conn.executemany(
        f"""INSERT INTO {schema}.outbox (ce_id, topic, ce_type, ce_source, ce_subject, ce_time, message_key, payload)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
        [
            (e.id, e.topic, e.type, e.source, e.subject, e.time,
             e.key.encode("utf-8") if e.key is not None else None, e.payload.SerializeToString())
            for e in events
        ],
    )


def build_producer(bootstrap: str, ssl_context: ssl.SSLContext) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        **client_security(ssl_context),
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        request_timeout_ms=10_000,
    )


class OutboxRelay:
    def __init__(
        self,
        pool: asyncpg.Pool,
        schema: str,
        bootstrap: str,
        *,
        tls: SslContextSource,
        batch_size: int = 500,
        idle_interval: float = 0.1,
        max_backoff: float = 5.0,
    ) -> None:
        self._pool = pool
        self._schema = schema
        self._bootstrap = bootstrap
        self._tls = tls
        self._batch_size = batch_size
        self._idle_interval = idle_interval
        self._max_backoff = max_backoff
        self._producer: AIOKafkaProducer | None = None
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Ask for a pass now instead of at the next idle tick (after a commit that enqueued events)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        # ``stop`` ends the wait between passes through the wake event: one waiter for the whole run. Two waiter
        # tasks and a wait_for per pass cost more CPU than the empty pass of an idle relay itself.
        stopping = asyncio.ensure_future(stop.wait())
        stopping.add_done_callback(lambda _: self._wake.set())
        backoff = self._idle_interval
        try:
            while not stop.is_set():
                try:
                    sent = await self.relay_once()
                    backoff = self._idle_interval
                    if sent == self._batch_size:
                        continue
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    OUTBOX_FAILURES.labels(self._schema).inc()
                    log.warning("outbox_relay_failed", schema=self._schema, error=str(error) or type(error).__name__)
                    await self._drop_producer()
                    backoff = min(max(backoff * 2, 0.2), self._max_backoff)
                self._wake.clear()
                if stop.is_set():
                    break
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(backoff):
                        await self._wake.wait()
        finally:
            stopping.cancel()
        await self._drop_producer()

    async def publish_backlog(self, within_s: float) -> None:
        """At shutdown, after ``run`` ended: publish what is left, for up to ``within_s`` (the rest stays in the
        outbox for the next relay), then close the producer."""
        try:
            async with asyncio.timeout(within_s):
                while await self.relay_once():
                    pass
        except TimeoutError:
            log.warning("outbox_backlog_left_at_shutdown", schema=self._schema, timeout_s=within_s)
        except Exception as error:
            OUTBOX_FAILURES.labels(self._schema).inc()
            log.warning("outbox_relay_failed", schema=self._schema, error=str(error) or type(error).__name__)
        finally:
            await self._drop_producer()

    async def relay_once(self) -> int:
        """Publish one batch; returns how many events were published."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                f"""SELECT id, ce_id, topic, ce_type, ce_source, ce_subject, ce_time, message_key, payload
                    FROM {self._schema}.outbox WHERE published_at IS NULL
                    ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED""",
                self._batch_size,
            )
            OUTBOX_BACKLOG.labels(self._schema).set(len(rows))
            if not rows:
                return 0
            producer = await self._ensure_producer()
            with _TRACER.start_as_current_span(f"{self._schema}.outbox publish", kind=trace.SpanKind.PRODUCER) as span:
                span.set_attribute("messaging.system", "kafka")
                span.set_attribute("messaging.batch.message_count", len(rows))
                trace_headers: list[tuple[str, bytes]] = []
                if span.is_recording():
                    carrier: dict[str, str] = {}
                    propagate.inject(carrier)
                    trace_headers = [(name, text.encode()) for name, text in carrier.items()]
                await _RecordBatches(producer).publish(rows, trace_headers)
            await conn.execute(
                f"UPDATE {self._schema}.outbox SET published_at = now() WHERE id = ANY($1::bigint[])",
                [row["id"] for row in rows],
            )
        OUTBOX_PUBLISHED.labels(self._schema).inc(len(rows))
        return len(rows)

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            # A fresh context per producer: after a failure (an expired certificate among them) the next one
            # presents the certificate renewed on disk.
            producer = build_producer(self._bootstrap, self._tls())
            try:
                await producer.start()
            except Exception:
                await producer.stop()
                raise
            self._producer = producer
        return self._producer

    async def _drop_producer(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            with contextlib.suppress(Exception):
                await producer.stop()
