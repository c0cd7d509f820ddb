"""The decision log against the real PostgreSQL: batched rows + outbox events, masking, drop rules,
counted overflow, idempotent retries and draining on shutdown."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from ig.events.v1 import events_pb2
from ig_policy.decisions import new_decision_id
from ig_policy.domain.masking import parse_drop_rules, parse_mask_rules
from ig_policy.domain.model import Decision, Reason, Result, Verdict
from ig_policy.store import SCHEMA
from ig_policy.store.decision_log import DecisionLog, LogSettings
from ig_policy.testing import golden_cases, new_record_protection

pytestmark = pytest.mark.integration

PROTECTION, OPENER = new_record_protection()
INPUT = next(c for c in golden_cases() if c.name == "same tenant and purpose may read").input


def decision(result: Result = Result.DENY, rule_id: str = "ig.tenant.mismatch") -> Decision:
    verdict = Verdict(result, rule_id, f"because {rule_id}", (Reason(rule_id, f"because {rule_id}"),))
    return Decision(new_decision_id(), verdict, "sha256:test", datetime.now(UTC), 0.5)


async def rows(pool: asyncpg.Pool, ids: list[str]) -> dict[str, dict[str, Any]]:
    found = await pool.fetch(f"SELECT decision_id, record FROM {SCHEMA}.decision_log WHERE decision_id = ANY($1)", ids)
    return {r["decision_id"]: json.loads(r["record"]) for r in found}


async def events(pool: asyncpg.Pool, ids: list[str]) -> dict[str, events_pb2.PolicyDecision]:
    found = await pool.fetch(f"SELECT ce_id, topic, ce_type, payload FROM {SCHEMA}.outbox WHERE ce_id = ANY($1)",
                             [f"evt_{i}" for i in ids])
    assert {(r["topic"], r["ce_type"]) for r in found} <= {("ig.policy.decisions.v1", "ig.policy.decision.v1")}
    return {r["ce_id"][4:]: events_pb2.PolicyDecision.FromString(r["payload"]) for r in found}


async def test_a_batch_is_written_with_its_events(policy_pool: asyncpg.Pool) -> None:
    log = DecisionLog(policy_pool, SCHEMA, None, LogSettings(region="region-a", protection=PROTECTION))
    batch = [(INPUT, decision()) for _ in range(3)]
    await log.write(batch)
    ids = [d.decision_id for _, d in batch]
    written = await rows(policy_pool, ids)
    assert set(written) == set(ids)
    record = written[ids[0]]
    assert record["result"] == "deny" and record["tenant"] == "alpha" and record["input"]["actor"]["id"] == "u-alice"
    published = await events(policy_pool, ids)
    assert set(published) == set(ids)
    assert published[ids[0]].rule_id == "ig.tenant.mismatch" and published[ids[0]].subject_hash == record["subject"]


async def test_each_batch_seals_its_inputs_under_a_data_key_of_its_own(policy_pool: asyncpg.Pool) -> None:
    log = DecisionLog(policy_pool, SCHEMA, None, LogSettings(region="region-a", protection=PROTECTION))
    batches = [[(INPUT, decision()) for _ in range(3)] for _ in range(2)]
    for batch in batches:
        await log.write(batch)
    written = await rows(policy_pool, [d.decision_id for batch in batches for _, d in batch])
    sealed_keys = [{written[d.decision_id]["sealedInput"].split(".")[3] for _, d in batch} for batch in batches]
    assert [len(keys) for keys in sealed_keys] == [1, 1] and sealed_keys[0] != sealed_keys[1]
    for batch in batches:
        for _, kept in batch:
            assert OPENER.open(written[kept.decision_id]["sealedInput"], kept.decision_id) == INPUT


async def test_writing_a_batch_twice_is_harmless(policy_pool: asyncpg.Pool) -> None:
    log = DecisionLog(policy_pool, SCHEMA, None, LogSettings(region="region-a", protection=PROTECTION))
    batch = [(INPUT, decision())]
    await log.write(batch)
    await log.write(batch)
    assert log.written == 1
    assert len(await events(policy_pool, [batch[0][1].decision_id])) == 1


async def test_mask_and_drop_rules_apply(policy_pool: asyncpg.Pool) -> None:
    settings = LogSettings(
        region="region-a", protection=PROTECTION,
        mask_rules=parse_mask_rules(["/input/actor/id", {"op": "upsert", "path": "/input/context/region",
                                                         "value": "masked"}]),
        drop_rules=parse_drop_rules([{"result": "allow"}]),
    )
    log = DecisionLog(policy_pool, SCHEMA, None, settings)
    kept, dropped = decision(), decision(Result.ALLOW, "ig.purpose.allow_read")
    glass = Decision(new_decision_id(), Verdict(Result.ALLOW, "ig.breakglass.allow", "granted",
                                                (Reason("ig.breakglass.allow", "granted"),), ("audit:break_glass",)),
                     "sha256:test", datetime.now(UTC), 0.5)
    await log.write([(INPUT, kept), (INPUT, dropped), (INPUT, glass)])
    written = await rows(policy_pool, [kept.decision_id, dropped.decision_id, glass.decision_id])
    assert set(written) == {kept.decision_id, glass.decision_id}, "break-glass is logged despite the drop rule"
    record = written[kept.decision_id]
    assert record["input"]["actor"]["id"] == PROTECTION.pseudonymize("u-alice") != "u-alice"
    assert record["input"]["context"]["region"] == "masked"
    assert record["subject"] == PROTECTION.pseudonymize("alpha/u-alice")
    assert OPENER.open(record["sealedInput"], kept.decision_id) == INPUT, "the whole input, sealed for replay"
    assert INPUT["actor"]["id"] == "u-alice", "masking works on the record, never on the caller's input"


async def test_overflow_is_counted_and_recorded_as_a_gap(policy_pool: asyncpg.Pool) -> None:
    log = DecisionLog(policy_pool, SCHEMA, None, LogSettings(region="region-a", protection=PROTECTION, queue_size=2))
    accepted = [log.submit(INPUT, decision()) for _ in range(5)]
    assert accepted == [True, True, False, False, False]
    before = await policy_pool.fetchval(f"SELECT count(*) FROM {SCHEMA}.decision_log_gaps")
    await log.drain()
    gap = await policy_pool.fetchrow(f"SELECT * FROM {SCHEMA}.decision_log_gaps ORDER BY id DESC LIMIT 1")
    assert await policy_pool.fetchval(f"SELECT count(*) FROM {SCHEMA}.decision_log_gaps") == before + 1
    assert gap["dropped"] == 3 and gap["first_dropped_at"] <= gap["last_dropped_at"]
    assert log.written == 2 and log.pending == 0


async def test_the_writer_batches_in_the_background_and_drains_on_stop(policy_pool: asyncpg.Pool) -> None:
    log = DecisionLog(policy_pool, SCHEMA, None, LogSettings(region="region-a", protection=PROTECTION,
                                                             batch_size=4, flush_interval=0.02))
    stop = asyncio.Event()
    task = asyncio.create_task(log.run(stop))
    first = [decision() for _ in range(10)]
    for d in first:
        log.submit(INPUT, d)
    for _ in range(200):
        if log.written >= 10:
            break
        await asyncio.sleep(0.02)
    assert log.written == 10
    last = decision()
    log.submit(INPUT, last)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert set(await rows(policy_pool, [d.decision_id for d in [*first, last]])) == {
        d.decision_id for d in [*first, last]}


async def test_cancelling_the_writer_still_writes_what_was_queued(policy_pool: asyncpg.Pool) -> None:
    log = DecisionLog(policy_pool, SCHEMA, None,
                      LogSettings(region="region-a", protection=PROTECTION, flush_interval=5))
    stop = asyncio.Event()
    task = asyncio.create_task(log.run(stop))
    await asyncio.sleep(0.05)
    queued = decision()
    log.submit(INPUT, queued)
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert queued.decision_id in await rows(policy_pool, [queued.decision_id])


async def test_a_failing_database_is_retried_then_counted_at_shutdown(policy_pool: asyncpg.Pool) -> None:
    log = DecisionLog(policy_pool, "no_such_schema", None, LogSettings(region="region-a", protection=PROTECTION,
                                                                          flush_interval=0.01))
    stop = asyncio.Event()
    task = asyncio.create_task(log.run(stop))
    log.submit(INPUT, decision())
    await asyncio.sleep(0.4)
    assert not task.done(), "a write failure is retried, it does not crash the service"
    log.submit(INPUT, decision())
    stop.set()
    await asyncio.wait_for(task, 10)
    assert log.written == 0 and log.pending == 0
