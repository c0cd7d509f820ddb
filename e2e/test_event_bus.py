"""Every service publishes a CloudEvent through its own outbox; a consumer gets each once through the broker.

Each relay connects as the service that owns the topic (the broker's ACLs allow nothing else); the consumer as the
reader identity, in a consumer group of its own prefix.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from ig.events.v1 import events_pb2
from ig_burn import events as burn_events
from ig_burn import store as burn_store
from ig_common.db import create_pool, prepare_schema
from ig_common.events.consumer import CloudEventConsumer
from ig_common.events.envelope import OutgoingEvent, ReceivedEvent
from ig_common.events.outbox import OutboxRelay, enqueue
from ig_common.events.topics import ALL_TOPICS
from ig_evidence import events as evidence_events
from ig_evidence import store as evidence_store
from ig_infra.kafka_reading import identity_tls
from ig_migration import events as migration_events
from ig_migration import store as migration_store
from ig_policy import store as policy_store
from ig_policy.events.decisions import decision_event
from ig_portal import events as portal_events
from ig_portal import store as portal_store

pytestmark = pytest.mark.integration


# Which workload identity publishes each store's outbox (policies/authz/kafka-topics.yaml: the topics' producers).
PUBLISHER = {policy_store: "policy", evidence_store: "evidence", portal_store: "audit-portal", burn_store: "burn",
             migration_store: "migration"}


def one_event_per_service(run: str) -> list[tuple[object, OutgoingEvent]]:
    return [
        (policy_store, decision_event(
            {"decisionId": f"dec_{run}", "ruleId": "ig.purpose.allow_read", "result": "allow", "tenant": "alpha"},
            region="region-a", evaluated_at=datetime.now(UTC))),
        (evidence_store, evidence_events.entry_appended(
            events_pb2.LedgerEntryAppended(seq=1, kind="bundle", subject=f"v1.2.1-{run}"))),
        (portal_store, portal_events.accessed(
            events_pb2.AuditAccess(user="auditor@alpha", tenant="alpha", action="view", object=f"release/{run}"))),
        (burn_store, burn_events.burn_transition(
            events_pb2.BurnTransition(slo=f"gateway-{run}", from_state="ok", to_state="throttled"))),
        (migration_store, migration_events.phase_changed(
            events_pb2.MigrationPhaseChanged(change=f"add-asset-index-v3-{run}", to_phase="expand"))),
    ]


@pytest.fixture
def own_database(infra: Any) -> Iterator[str]:
    """A database of this test's own: it lays out every service's schema as the superuser, which in the session's
    shared database would lock the services' own roles out of them."""
    url = infra.new_database("ig_bus")
    yield url
    infra.drop_database(url)


async def test_each_service_event_reaches_a_consumer_exactly_once(
    own_database: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    pool = await create_pool(own_database, max_size=20)
    stop = asyncio.Event()
    tasks = []
    try:
        published = one_event_per_service(run)
        wanted = {event.id for _, event in published}
        await prepare_schema(pool, "bus_consumer", tmp_path)
        await pool.execute("CREATE TABLE IF NOT EXISTS bus_consumer.received (ce_id text, topic text, type text)")

        async def record(conn: asyncpg.Connection, event: ReceivedEvent) -> None:
            if event.id in wanted:
                await conn.execute("INSERT INTO bus_consumer.received VALUES ($1, $2, $3)",
                                   event.id, event.topic, event.type)

        # A new group reading from "latest", joined before anything is published: the shared topics' history
        # (benchmarks leave plenty) is not this test's business.
        consumer = CloudEventConsumer(name=f"bus-test-{run}", bootstrap=kafka_bootstrap, topics=list(ALL_TOPICS),
                                      pool=pool, schema="bus_consumer", handler=record, offset_reset="latest",
                                      tls=identity_tls("operator"), group_id=f"operator.bus-test-{run}")
        tasks.append(asyncio.create_task(consumer.run(stop)))
        await asyncio.wait_for(consumer.ready.wait(), timeout=60)
        for store, event in published:
            await prepare_schema(pool, store.SCHEMA, store.MIGRATIONS)  # type: ignore[attr-defined]
            async with pool.acquire() as conn, conn.transaction():
                await enqueue(conn, store.SCHEMA, event)  # type: ignore[attr-defined]
            tasks.append(asyncio.create_task(
                OutboxRelay(pool, store.SCHEMA, kafka_bootstrap,  # type: ignore[attr-defined]
                            tls=identity_tls(PUBLISHER[store])).run(stop)))
        for _ in range(300):
            count = await pool.fetchval("SELECT count(DISTINCT ce_id) FROM bus_consumer.received")
            if count == len(wanted):
                break
            await asyncio.sleep(0.2)
        rows = await pool.fetch("SELECT ce_id, topic, type FROM bus_consumer.received")
        assert sorted(r["ce_id"] for r in rows) == sorted(wanted), "each event exactly once"
        assert {(r["topic"], r["type"]) for r in rows} == {(e.topic, e.type) for _, e in published}

        # A redelivery of an event already handled is skipped by the inbox.
        first = published[0][1]
        redelivered = ReceivedEvent(id=first.id, type=first.type, source=first.source, subject=first.subject,
                                    time=first.time, topic=first.topic, key=first.key,
                                    data=first.payload.SerializeToString())
        assert await consumer.handle(redelivered) is False
        assert await pool.fetchval("SELECT count(*) FROM bus_consumer.received WHERE ce_id = $1", first.id) == 1
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await pool.close()
