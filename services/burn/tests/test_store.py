"""The PostgreSQL side against the real database: flag history, transitions that cannot be applied twice."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest
from ig_burn.domain.throttle import ThrottleState, Transition
from ig_burn.store import MIGRATIONS
from ig_burn.store.flags import FlagStore
from ig_burn.store.throttles import ThrottleStore
from ig_common.db import prepare_schema

pytestmark = pytest.mark.integration
NOW = datetime(2026, 1, 5, 12, tzinfo=UTC)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[tuple[asyncpg.Pool, str]]:
    schema = f"burn_t{uuid.uuid4().hex[:8]}"
    created = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    assert created is not None
    await prepare_schema(created, schema, MIGRATIONS)
    yield created, schema
    await created.execute(f"DROP SCHEMA {schema} CASCADE")
    await created.close()


async def test_flag_history_and_no_op_writes(pool: tuple[asyncpg.Pool, str]) -> None:
    db, schema = pool
    flags = FlagStore(schema)
    async with db.acquire() as conn, conn.transaction():
        _, first = await flags.set(conn, "a.flag", True, pinned=False, changed_by="alice", reason="launch")
        _, again = await flags.set(conn, "a.flag", True, pinned=False, changed_by="bob", reason="same value")
        flag, third = await flags.set(conn, "a.flag", 7, pinned=True, changed_by="carol", reason="pin a limit")
    assert (first, again, third) == (True, False, True)
    assert (flag.value, flag.pinned, flag.version) == (7, True, 2)
    async with db.acquire() as conn:
        history = await flags.history(conn, "a.flag")
        events = await conn.fetchval(f"SELECT count(*) FROM {schema}.outbox WHERE topic = 'ig.flags.v1'")
    assert [(h.value, h.changed_by, h.reason) for h in history] == [(7, "carol", "pin a limit"),
                                                                   (True, "alice", "launch")]
    assert events == 2


async def test_a_transition_is_applied_once_and_opens_one_incident(pool: tuple[asyncpg.Pool, str]) -> None:
    db, schema = pool
    store = ThrottleStore(schema, FlagStore(schema), "http://burn")
    store.webhooks_enabled = True
    transition = Transition("s1", "ok", "throttled", 0.25, "25% > 20%", (("subs.optimizedBuffer", False),))
    new_state = ThrottleState("s1", "throttled", NOW, "warn", False, 0.25, NOW)
    results = []
    for _ in range(2):  # e.g. a restarted evaluator reaching the same decision from an old snapshot
        async with db.acquire() as conn, conn.transaction():
            results.append(await store.apply_transition(conn, new_state, transition, "svc", "warning"))
    assert results[0] is not None and results[0].incident_id and results[1] is None
    async with db.acquire() as conn:
        counts = await conn.fetchrow(
            f"""SELECT (SELECT count(*) FROM {schema}.incidents) AS incidents,
                       (SELECT count(*) FROM {schema}.transitions) AS transitions,
                       (SELECT count(*) FROM {schema}.webhook_deliveries) AS webhooks,
                       (SELECT count(*) FROM {schema}.outbox) AS events""")
        # A second "open" for the same SLO is refused by the partial unique index itself.
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(f"""INSERT INTO {schema}.incidents (incident_id, slo, service, status, severity,
                                   summary) VALUES ('inc_x', 's1', 'svc', 'open', 'warning', 'dup')""")
    # events: flag change + burn transition + incident opened
    assert dict(counts) == {"incidents": 1, "transitions": 1, "webhooks": 1, "events": 3}
    back = Transition("s1", "throttled", "ok", 0.05, "5% < 10%", (("subs.optimizedBuffer", True),))
    async with db.acquire() as conn, conn.transaction():
        released = await store.apply_transition(conn, ThrottleState("s1", "ok", NOW), back, "svc", "warning")
    assert released is not None and released.incident_id == results[0].incident_id
    async with db.acquire() as conn:
        [incident] = await store.incidents(conn)
    assert incident.status == "resolved" and incident.resolved_at is not None
