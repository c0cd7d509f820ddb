"""Reading a shared topic from a moment instead of from its beginning.

The local Kafka outlives test runs and keeps what the benchmarks and ``make up`` published: hundreds of MB on
ig.policy.decisions.v1 after a few ``make bench`` runs. A test that reads a topic from the earliest offset then
spends minutes before reaching its own events, and fails on time. Tests open a consumer positioned at the
first record produced at or after a moment they noted before acting.

The consumer presents the reader identity's certificate (``operator``: READ on every topic of the bus, see
policies/authz/kafka-topics.yaml), from ``$IG_IDENTITIES`` or the run dir's identities.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from ig_common.events.kafka_tls import SslContextSource, client_security
from ig_common.tls import IDENTITIES_VARIABLE, WorkloadCertificate

from ig_infra.components.kafka import READER_IDENTITY
from ig_infra.paths import Paths
from ig_infra.pki import identities_directory


def identity_directory(name: str) -> Path:
    """Where ``name``'s certificate is: ``$IG_IDENTITIES/<name>`` (``ig-infra env``), else the run dir's."""
    root = os.environ.get(IDENTITIES_VARIABLE)
    return Path(root) / name if root else identities_directory(Paths.from_environment().run) / name


def identity_tls(name: str) -> SslContextSource:
    """``name``'s certificate as the context source a relay or consumer of ig_common.events takes."""
    return WorkloadCertificate(identity_directory(name)).client_ssl_context


@contextlib.asynccontextmanager
async def consumer_at(bootstrap: str, *topics: str, since: float | None = None, identity: str = READER_IDENTITY,
                      tls: SslContextSource | None = None) -> AsyncIterator[AIOKafkaConsumer]:
    """A started consumer of every partition of ``topics``, positioned at ``since`` (epoch seconds, default now),
    connected as ``identity`` (or with ``tls``, for a broker of another CA or run dir than ``make up``'s).

    No consumer group: nothing is committed and no rebalance can move the positions.
    """
    since_ms = int((time.time() if since is None else since) * 1000)
    # Without a group the consumer is assigned every partition of its topics as soon as it has their metadata.
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, enable_auto_commit=False,
                                **client_security((tls or identity_tls(identity))()))
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


async def records_until_now(consumer: AIOKafkaConsumer) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    """Every record from the consumer's positions up to the end offsets each partition has when this starts: what
    was published so far, then the iteration ends instead of waiting for more."""
    ends = await consumer.end_offsets(sorted(consumer.assignment()))
    while any([await consumer.position(partition) < end for partition, end in ends.items()]):
        for records in (await consumer.getmany(timeout_ms=1000)).values():
            for record in records:
                yield record

