"""The decision log's writer process, for real: hand-over, mirrored metrics, a writer killed mid-stream (its loss
counted and recorded as a gap, a new one started) and a shutdown that writes everything handed over."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import asyncpg
import pytest
from ig_infra.kafka_reading import identity_directory
from ig_policy.decisions import new_decision_id
from ig_policy.domain.model import Decision, Reason, Result, Verdict
from ig_policy.store import SCHEMA
from ig_policy.store.decision_log import LOG_DROPPED, LOG_WRITTEN
from ig_policy.store.handoff import MAX_FRAME_BYTES, Decisions, MetricMirror, Status, encode, read_message
from ig_policy.store.log_process import DecisionLogProcess
from ig_policy.testing import golden_cases
from prometheus_client import Counter, Gauge

INPUT = next(c for c in golden_cases() if c.name == "same tenant and purpose may read").input


def decision() -> Decision:
    verdict = Verdict(Result.DENY, "ig.tenant.mismatch", "because", (Reason("ig.tenant.mismatch", "because"),))
    return Decision(new_decision_id(), verdict, "sha256:test", datetime.now(UTC), 0.5)


def value(counter: Counter) -> float:
    return next(s.value for f in counter.collect() for s in f.samples if s.name.endswith("_total"))


# -- the wire (no processes) ---------------------------------------------------------------------------------------

async def test_messages_survive_the_wire_and_the_end_of_the_stream_reads_as_none() -> None:
    reader = asyncio.StreamReader()
    sent = Decisions([(INPUT, decision())])
    reader.feed_data(encode(sent) + encode(Status(3, {("x_total", ()): 1.0})))
    reader.feed_eof()
    assert await read_message(reader) == sent
    assert await read_message(reader) == Status(3, {("x_total", ()): 1.0})
    assert await read_message(reader) is None


async def test_an_oversized_or_foreign_frame_is_refused() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data((MAX_FRAME_BYTES + 1).to_bytes(4, "big"))
    with pytest.raises(ValueError, match="exceeds"):
        await read_message(reader)
    payload = pickle.dumps({"not": "a message"})
    reader = asyncio.StreamReader()
    reader.feed_data(len(payload).to_bytes(4, "big") + payload)
    with pytest.raises(TypeError, match="unexpected"):
        await read_message(reader)


def test_the_mirror_adds_what_a_writer_counted_since_its_last_report_across_restarts() -> None:
    counter = Counter("test_mirror_written", "test", ["schema"], registry=None)
    gauge = Gauge("test_mirror_queue", "test", registry=None)
    mirror = MetricMirror([counter], [gauge])
    key = ("test_mirror_written_total", (("schema", "policy"),))
    mirror.apply({key: 5.0, ("test_mirror_queue", ()): 7.0})
    mirror.apply({key: 8.0, ("test_mirror_queue", ()): 2.0})
    mirror.restart()  # a new writer counts from zero again
    mirror.apply({key: 4.0, ("test_mirror_queue", ()): 0.0})
    assert counter.labels(schema="policy")._value.get() == 12.0
    assert gauge._value.get() == 0.0


# -- the writer process against the real PostgreSQL --------------------------------------------------------------

@pytest.fixture
def writer_env(monkeypatch: pytest.MonkeyPatch, database_url: str, kafka_bootstrap: str,
               policy_pool: asyncpg.Pool, decision_log_key_files: dict[str, str]) -> None:
    """The writer reads the service's settings from the environment it inherits (schema migrated by policy_pool)."""
    policy_identity = identity_directory("policy")  # before IG_RUN_DIR / IG_IDENTITIES are cleared
    for name in [n for n in os.environ if n.startswith("IG_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("IG_DATABASE_URL", database_url)
    monkeypatch.setenv("IG_KAFKA_BOOTSTRAP", kafka_bootstrap)
    # The writer's relay publishes ig.policy.decisions.v1 as the policy identity (the topic's only producer).
    monkeypatch.setenv("IG_TLS_DIR", str(policy_identity))
    monkeypatch.setenv("IG_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("IG_DECISION_LOG_FLUSH_MS", "20")
    for name, value in decision_log_key_files.items():
        monkeypatch.setenv(name, value)


@contextlib.asynccontextmanager
async def running(handoff: DecisionLogProcess) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(handoff.run())
    try:
        await handoff.wait_ready(within_s=60)
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(check: Callable[[], Awaitable[bool]], what: str, within_s: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def logged(pool: asyncpg.Pool, decisions: list[Decision]) -> int:
    return int(await pool.fetchval(f"SELECT count(*) FROM {SCHEMA}.decision_log WHERE decision_id = ANY($1)",
                                   [d.decision_id for d in decisions]))


@pytest.mark.integration
@pytest.mark.usefixtures("writer_env")
async def test_handed_over_decisions_are_written_and_counted_in_this_process(policy_pool: asyncpg.Pool) -> None:
    handoff = DecisionLogProcess(flush_interval=0.01)
    assert handoff.submit(INPUT, decision()) is False, "no writer yet: refused and counted, never silently lost"
    written_before = value(LOG_WRITTEN)
    async with running(handoff):
        batch = [decision() for _ in range(25)]
        assert all(handoff.submit(INPUT, d) for d in batch)

        async def all_logged() -> bool:
            return await logged(policy_pool, batch) == 25

        async def counted_here() -> bool:
            return value(LOG_WRITTEN) >= written_before + 25

        await until(all_logged, "the 25 decisions in the decision log")
        await until(counted_here, "the writer's count on this process's metrics")


@pytest.mark.integration
@pytest.mark.usefixtures("writer_env")
async def test_stopping_the_service_writes_everything_handed_over(policy_pool: asyncpg.Pool) -> None:
    handoff = DecisionLogProcess(flush_interval=1.0)  # still pending here when the stop comes
    async with running(handoff):
        batch = [decision() for _ in range(40)]
        assert all(handoff.submit(INPUT, d) for d in batch)
    assert handoff.writer_pid is None
    assert await logged(policy_pool, batch) == 40


@pytest.mark.integration
@pytest.mark.usefixtures("writer_env")
async def test_a_killed_writer_is_replaced_and_what_it_held_is_counted_and_recorded(policy_pool: asyncpg.Pool) -> None:
    handoff = DecisionLogProcess(flush_interval=0.01, restart_backoff=0.1)
    gaps_before = await policy_pool.fetchval(f"SELECT count(*) FROM {SCHEMA}.decision_log_gaps")
    async with running(handoff):
        first_pid = handoff.writer_pid
        assert first_pid is not None
        os.kill(first_pid, signal.SIGSTOP)  # it receives but can write nothing
        held = [decision() for _ in range(5)]
        assert all(handoff.submit(INPUT, d) for d in held)
        await asyncio.sleep(0.2)
        dropped_before = value(LOG_DROPPED)
        os.kill(first_pid, signal.SIGKILL)

        async def replaced() -> bool:
            return handoff.restarts == 1 and handoff.writer_pid not in (None, first_pid)

        await until(replaced, "a new writer")
        assert value(LOG_DROPPED) == dropped_before + 5
        after = [decision()]
        await asyncio.sleep(0.1)  # the new writer's socket is open once its process is
        assert all(handoff.submit(INPUT, d) for d in after)

        async def written_after() -> bool:
            return await logged(policy_pool, after) == 1

        await until(written_after, "the next decision, with the gap")
    assert await logged(policy_pool, held) == 0
    gap = await policy_pool.fetchrow(f"SELECT * FROM {SCHEMA}.decision_log_gaps ORDER BY id DESC LIMIT 1")
    assert await policy_pool.fetchval(f"SELECT count(*) FROM {SCHEMA}.decision_log_gaps") == gaps_before + 1
    assert gap["dropped"] == 5
