"""The outbox against the real PostgreSQL and Kafka, including a broker outage."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from pathlib import Path

import asyncpg
import pytest
from ig.events.v1 import events_pb2
from ig_common.db import create_pool, prepare_schema
from ig_common.events.envelope import OutgoingEvent, from_kafka_record
from ig_common.events.outbox import OutboxRelay, enqueue
from ig_common.events.topics import MIGRATION
from ig_infra.kafka_reading import consumer_at, identity_tls

pytestmark = pytest.mark.integration

EMPTY_MIGRATIONS = Path(__file__).parent / "no_migrations"


def phase_event(change: str) -> OutgoingEvent:
    payload = events_pb2.MigrationPhaseChanged(change=change, from_phase="a", to_phase="b")
    return OutgoingEvent(topic=MIGRATION, type="ig.migration.phase_changed.v1", source="/test", payload=payload,
                         subject=change, key=change)


async def collect(bootstrap: str, topic: str, wanted: set[str], since: float, within: float,
                  unwanted: frozenset[str] = frozenset()) -> Counter[str]:
    """Read ``topic`` from ``since`` on until every wanted ce_id was seen (or time runs out), counting the unwanted
    ones too: waiting for an event that must never come would cost the whole ``within`` every run."""
    seen: Counter[str] = Counter()
    counted = wanted | unwanted
    async with consumer_at(bootstrap, topic, since=since) as consumer:
        deadline = asyncio.get_running_loop().time() + within
        while asyncio.get_running_loop().time() < deadline:
            batches = await consumer.getmany(timeout_ms=300)
            for records in batches.values():
                for record in records:
                    event = from_kafka_record(record.topic, record.key, record.value, list(record.headers))
                    if event.id in counted:
                        seen[event.id] += 1
            if wanted <= set(seen):
                # Keep reading briefly so that a duplicate delivery would be seen too.
                await asyncio.sleep(1.0)
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    for record in records:
                        event = from_kafka_record(record.topic, record.key, record.value, list(record.headers))
                        if event.id in counted:
                            seen[event.id] += 1
                break
    return seen


@pytest.fixture
async def outbox_pool(database_url: str, tmp_path: Path) -> asyncpg.Pool:
    pool = await create_pool(database_url)
    await prepare_schema(pool, "outbox_test", tmp_path)
    yield pool
    await pool.close()


async def test_events_commit_with_state_and_are_published_once(
    outbox_pool: asyncpg.Pool, kafka_bootstrap: str
) -> None:
    since = time.time()
    events = [phase_event(f"change-{uuid.uuid4().hex[:8]}") for _ in range(20)]
    async with outbox_pool.acquire() as conn, conn.transaction():
        for event in events:
            await enqueue(conn, "outbox_test", event)
    # A rolled-back transaction publishes nothing.
    rolled_back = phase_event("rolled-back")
    with pytest.raises(RuntimeError):
        async with outbox_pool.acquire() as conn, conn.transaction():
            await enqueue(conn, "outbox_test", rolled_back)
            raise RuntimeError("abort")

    relay = OutboxRelay(outbox_pool, "outbox_test", kafka_bootstrap, tls=identity_tls("migration"))
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        seen = await collect(kafka_bootstrap, MIGRATION, {e.id for e in events}, since, within=30,
                             unwanted=frozenset({rolled_back.id}))
    finally:
        stop.set()
        await task
    assert seen == Counter({e.id: 1 for e in events})
    assert await outbox_pool.fetchval("SELECT count(*) FROM outbox_test.outbox WHERE published_at IS NULL") == 0


async def test_kafka_outage_loses_nothing_and_duplicates_nothing(
    outbox_pool: asyncpg.Pool, kafka_bootstrap: str, infra: object
) -> None:
    kafka = infra.kafka  # type: ignore[attr-defined]
    since = time.time()
    relay = OutboxRelay(outbox_pool, "outbox_test", kafka_bootstrap, tls=identity_tls("migration"),
                        max_backoff=1.0)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    events = [phase_event(f"outage-{uuid.uuid4().hex[:8]}") for _ in range(5)]
    try:
        await asyncio.to_thread(kafka.stop)
        async with outbox_pool.acquire() as conn, conn.transaction():
            for event in events:
                await enqueue(conn, "outbox_test", event)
        await asyncio.sleep(3)  # the relay tries and fails while the broker is down
        waiting = await outbox_pool.fetchval(
            "SELECT count(*) FROM outbox_test.outbox WHERE published_at IS NULL AND ce_id = ANY($1)",
            [e.id for e in events])
        assert waiting == len(events)
        await asyncio.to_thread(kafka.start)
        seen = await collect(kafka_bootstrap, MIGRATION, {e.id for e in events}, since, within=60)
    finally:
        if not await asyncio.to_thread(kafka.healthy):
            await asyncio.to_thread(kafka.start)
        stop.set()
        await task
    assert seen == Counter({e.id: 1 for e in events})
