"""Reading every record a Kafka cluster holds, to the end offsets it had when the scan began.

The residency probes search a whole cluster for a tenant's data: each lists every partition of every topic (internal
``__`` topics aside), reads each from a start offset to its end, and must fail rather than pass when a partition
cannot be read to its end in time (a probe that read nothing would otherwise report "nothing found").
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient


async def all_partitions(bootstrap: str, security: dict[str, Any]) -> list[TopicPartition]:
    """Every partition of every topic except Kafka's own (``__consumer_offsets`` and the like)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000, **security)
    await admin.start()
    try:
        topics = sorted(t for t in await admin.list_topics() if not t.startswith("__"))
        described = await admin.describe_topics(topics) if topics else []
    finally:
        await admin.close()
    return [TopicPartition(d["topic"], p["partition"]) for d in described for p in d["partitions"]]


async def records_to_end(bootstrap: str, partitions: list[TopicPartition], security: dict[str, Any], *,
                         since_ms: int | None = None, within: float) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    """Each record of ``partitions`` from the beginning (or from the first record at or after ``since_ms``) up to
    at least the end offsets taken when the scan starts (records that arrive meanwhile may come too).

    Raises TimeoutError when some partition is not read to its end within ``within`` seconds.
    """
    if not partitions:
        return
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, request_timeout_ms=5000,
                                **security)
    await consumer.start()
    try:
        consumer.assign(partitions)
        end = await consumer.end_offsets(partitions)
        start = {tp: 0 for tp in partitions}
        if since_ms is not None:
            found = await consumer.offsets_for_times({tp: since_ms for tp in partitions})
            start = {tp: (found[tp].offset if found.get(tp) else end[tp]) for tp in partitions}
        for tp in partitions:
            consumer.seek(tp, start[tp])
        remaining = {tp for tp in partitions if end[tp] > start[tp]}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while remaining and loop.time() < deadline:
            for tp, records in (await consumer.getmany(*remaining, timeout_ms=500)).items():
                for record in records:
                    yield record
                    if record.offset + 1 >= end[tp]:
                        remaining.discard(tp)
        if remaining:
            raise TimeoutError(f"could not read {len(remaining)} partitions to their end within {within}s")
    finally:
        await consumer.stop()
