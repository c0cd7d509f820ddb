"""Reading a shared topic from a moment instead of from its beginning.

The local Kafka outlives test runs and keeps what the benchmarks and ``make up`` published: hundreds of MB on
ig.policy.decisions.v1 after a few ``make bench`` runs. A test that reads a topic from the earliest offset then
spends minutes before reaching its own events, and fails on time. Tests open a consumer positioned at the
first record produced at or after a moment they noted before acting.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator

from aiokafka import AIOKafkaConsumer


@contextlib.asynccontextmanager
async def consumer_at(bootstrap: str, *topics: str, since: float | None = None) -> AsyncIterator[AIOKafkaConsumer]:
    """A started consumer of every partition of ``topics``, positioned at ``since`` (epoch seconds, default now).

    No consumer group: nothing is committed and no rebalance can move the positions.
    """
    since_ms = int((time.time() if since is None else since) * 1000)
    # Without a group the consumer is assigned every partition of its topics as soon as it has their metadata.
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = sorted(consumer.assignment())
        missing = set(topics) - {partition.topic for partition in partitions}
        if missing:
            raise LookupError(f"no partitions of {sorted(missing)} at {bootstrap}")
        # End offsets first: a record produced between the two queries is then either found by offsets_for_times
        # or lies past the end offset taken before it, so none is skipped.
        ends = await consumer.end_offsets(partitions)
        firsts = await consumer.offsets_for_times({partition: since_ms for partition in partitions})
        for partition in partitions:
            first = firsts[partition]
            consumer.seek(partition, first.offset if first is not None else ends[partition])
        yield consumer
    finally:
        await consumer.stop()
