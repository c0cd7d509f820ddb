"""consumer_at against the real Kafka: it starts at a moment, not at the topic's beginning.

The scratch topics have no ACLs, so only the admin identity (a super user) writes and reads them here.
"""

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from ig_common.events.kafka_tls import client_security
from ig_infra.components.kafka import ADMIN_IDENTITY
from ig_infra.kafka_reading import consumer_at, identity_tls

pytestmark = pytest.mark.integration


@pytest.fixture
def topic(infra: Any) -> Iterator[str]:
    name = f"test.kafka-reading.{uuid.uuid4().hex[:8]}"
    infra.kafka.create_topics([name], partitions=3)
    yield name
    infra.kafka.delete_topics([name])  # the broker is shared: leave no topic per run behind


async def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **client_security(identity_tls(ADMIN_IDENTITY)()))
    await producer.start()
    try:
        # Spread over every partition: each one must be positioned, not just the first.
        await asyncio.gather(*[await producer.send(topic, value, partition=i % 3) for i, value in enumerate(values)])
    finally:
        await producer.stop()


async def read(consumer: AIOKafkaConsumer, count: int) -> list[bytes]:
    values: list[bytes] = []
    async with asyncio.timeout(30):
        while len(values) < count:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                values += [record.value for record in records if record.value is not None]
    return values


async def test_reading_starts_at_the_first_record_produced_since_the_moment(topic: str, kafka_bootstrap: str) -> None:
    await produce(kafka_bootstrap, topic, [b"before-%d" % i for i in range(6)])
    since = time.time()
    await asyncio.sleep(0.01)  # record timestamps are milliseconds
    await produce(kafka_bootstrap, topic, [b"after-%d" % i for i in range(6)])
    async with consumer_at(kafka_bootstrap, topic, since=since, identity=ADMIN_IDENTITY) as consumer:
        assert sorted(await read(consumer, 6)) == [b"after-%d" % i for i in range(6)]


async def test_by_default_reading_starts_now(topic: str, kafka_bootstrap: str) -> None:
    await produce(kafka_bootstrap, topic, [b"old-%d" % i for i in range(6)])
    async with consumer_at(kafka_bootstrap, topic, identity=ADMIN_IDENTITY) as consumer:
        await produce(kafka_bootstrap, topic, [b"new-%d" % i for i in range(6)])
        assert sorted(await read(consumer, 6)) == [b"new-%d" % i for i in range(6)]
