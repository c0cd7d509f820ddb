"""At-least-once CloudEvent consumer that deduplicates on ``ce_id`` in the consumer's own schema.

The handler runs in the same transaction as the inbox insert, so an event's effect and the record that it was
seen commit together; the Kafka offset is committed afterwards.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer
from prometheus_client import Counter

from ig_common.events.envelope import ReceivedEvent, from_kafka_record
from ig_common.events.kafka_tls import SslContextSource, client_security

log = structlog.get_logger(__name__)

EVENTS_CONSUMED = Counter("ig_events_consumed_total", "CloudEvents handled, by consumer", ["consumer"])
EVENTS_DUPLICATE = Counter("ig_events_duplicate_total", "CloudEvents skipped as already seen", ["consumer"])

Handler = Callable[[asyncpg.pool.PoolConnectionProxy, ReceivedEvent], Awaitable[None]]


class CloudEventConsumer:
    def __init__(
        self,
        *,
        name: str,
        bootstrap: str,
        topics: Sequence[str],
        pool: asyncpg.Pool,
        schema: str,
        handler: Handler,
        tls: SslContextSource,
        group_id: str | None = None,
        offset_reset: str = "earliest",
    ) -> None:
        self.name = name
        self._topics = list(topics)
        self._pool = pool
        self._schema = schema
        self._handler = handler
        self._consumer = AIOKafkaConsumer(
            *self._topics,
            bootstrap_servers=bootstrap,
            **client_security(tls()),
            group_id=group_id or name,
            enable_auto_commit=False,
            auto_offset_reset=offset_reset,
        )
        # Set once the group is joined and partitions are assigned (positions resolved).
        self.ready = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        await self._consumer.start()
        try:
            while not stop.is_set():
                batches = await self._consumer.getmany(timeout_ms=200, max_records=500)
                if not self.ready.is_set() and self._consumer.assignment():
                    self.ready.set()
                for records in batches.values():
                    for record in records:
                        event = from_kafka_record(record.topic, record.key, record.value, list(record.headers))
                        await self.handle(event)
                if batches:
                    await self._consumer.commit()
        finally:
            await self._consumer.stop()

    async def handle(self, event: ReceivedEvent) -> bool:
        """Apply ``event`` once; returns False when it had been seen before."""
        async with self._pool.acquire() as conn, conn.transaction():
            inserted = await conn.fetchval(
                f"""INSERT INTO {self._schema}.inbox (consumer, ce_id, topic) VALUES ($1, $2, $3)
                    ON CONFLICT DO NOTHING RETURNING true""",
                self.name, event.id, event.topic,
            )
            if not inserted:
                EVENTS_DUPLICATE.labels(self.name).inc()
                return False
            await self._handler(conn, event)
        EVENTS_CONSUMED.labels(self.name).inc()
        return True
