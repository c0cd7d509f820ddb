"""The decision log's writer process, for real: decisions through the write-ahead log, mirrored metrics, a writer
SIGKILLed in the middle of a 1,000-decision burst (nothing lost, nothing twice), and a shutdown that writes
everything answered."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import shutil
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest
from ig.policy.v1 import policy_pb2_grpc
from ig_common.authz import AuthorizationTable
from ig_common.grpc_client import aio_channel_as
from ig_common.grpc_server import ServerSecurity, build_grpc_server
from ig_common.tls import WorkloadCertificate
from ig_infra.kafka_reading import identity_directory
from ig_policy.api.grpc_service import policy_grpc_service
from ig_policy.api.translate import request_from_proto
from ig_policy.decisions import DecisionService, new_decision_id
from ig_policy.domain.model import Decision, DecisionRequest, Reason, Result, Verdict
from ig_policy.domain.wal_entry import encode_decision
from ig_policy.domain.wal_format import RECORD
from ig_policy.engine.opa import OpaEngine
from ig_policy.store import SCHEMA
from ig_policy.store.decision_log import LOG_WRITTEN
from ig_policy.store.handoff import MAX_FRAME_BYTES, MetricMirror, Status, encode, read_message
from ig_policy.store.log_process import DecisionLogProcess
from ig_policy.store.wal import WalSettings, WriteAheadLog, segments
from ig_policy.store.wal_consumer import WAL_REPLAYED
from ig_policy.testing import SettableClock, free_port, golden_cases, proto_from_input
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
    reader.feed_data(encode(Status(3, {("x_total", ()): 1.0})))
    reader.feed_eof()
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
def wal_dir(tmp_path: Path) -> Path:
    return tmp_path / "wal"


@pytest.fixture
def writer_env(monkeypatch: pytest.MonkeyPatch, database_url: str, kafka_bootstrap: str,
               policy_pool: asyncpg.Pool, decision_log_key_files: dict[str, str], wal_dir: Path) -> None:
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
    monkeypatch.setenv("IG_DECISION_LOG_WAL_DIR", str(wal_dir))


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


async def until(check: Callable[[], Awaitable[bool]], what: str, within_s: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def logged_ids(pool: asyncpg.Pool, ids: list[str]) -> list[str]:
    rows = await pool.fetch(f"SELECT decision_id FROM {SCHEMA}.decision_log WHERE decision_id = ANY($1)", ids)
    return [row["decision_id"] for row in rows]


async def gap_rows(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval(f"SELECT count(*) FROM {SCHEMA}.decision_log_gaps"))


@pytest.mark.integration
@pytest.mark.usefixtures("writer_env")
async def test_recorded_decisions_are_written_and_counted_in_this_process(policy_pool: asyncpg.Pool,
                                                                          wal_dir: Path) -> None:
    handoff = DecisionLogProcess(WalSettings(wal_dir))
    written_before = value(LOG_WRITTEN)
    async with running(handoff):
        batch = [decision() for _ in range(25)]
        await asyncio.gather(*(handoff.record(INPUT, d) for d in batch))

        async def all_logged() -> bool:
            return len(await logged_ids(policy_pool, [d.decision_id for d in batch])) == 25

        async def counted_here() -> bool:
            return value(LOG_WRITTEN) >= written_before + 25

        await until(all_logged, "the 25 decisions in the decision log")
        await until(counted_here, "the writer's count on this process's metrics")


@pytest.mark.integration
@pytest.mark.usefixtures("writer_env")
async def test_stopping_the_service_writes_everything_answered(policy_pool: asyncpg.Pool, wal_dir: Path) -> None:
    handoff = DecisionLogProcess(WalSettings(wal_dir))
    async with running(handoff):
        batch = [decision() for _ in range(40)]
        await asyncio.gather(*(handoff.record(INPUT, d) for d in batch))
    assert handoff.writer_pid is None
    assert handoff.restarts == 0, "the writer exited during the test: nothing left to take the WAL at the stop"
    assert len(await logged_ids(policy_pool, [d.decision_id for d in batch])) == 40


def burst_requests(count: int) -> list[DecisionRequest]:
    cases = [c for c in golden_cases() if proto_from_input(c.input) is not None]
    requests = []
    for case in cases:
        request, errors = request_from_proto(proto_from_input(case.input))
        if not errors:
            requests.append(request)
    return [requests[n % len(requests)] for n in range(count)]


@pytest.mark.integration
@pytest.mark.usefixtures("writer_env")
async def test_a_writer_killed_in_a_burst_loses_no_answered_decision_and_writes_none_twice(
        policy_pool: asyncpg.Pool, engine: OpaEngine, wal_dir: Path) -> None:
    handoff = DecisionLogProcess(WalSettings(wal_dir), restart_backoff=0.1)
    service = DecisionService(engine, handoff, region="region-a", clock=SettableClock())
    gaps_before = await gap_rows(policy_pool)
    replayed_before = value(WAL_REPLAYED)
    answered: list[str] = []
    async with running(handoff):
        first_pid = handoff.writer_pid
        assert first_pid is not None
        in_flight = asyncio.Semaphore(32)

        async def ask(request: DecisionRequest) -> None:
            async with in_flight:
                answered.append((await service.decide(request)).decision_id)
                if len(answered) == 200:
                    os.kill(first_pid, signal.SIGKILL)

        await asyncio.gather(*(ask(r) for r in burst_requests(1000)))
        assert len(answered) == 1000, "every decision is answered while the writer is away"

        async def replaced() -> bool:
            return handoff.writer_pid not in (None, first_pid)

        await until(replaced, "a new writer")

        async def all_logged() -> bool:
            return len(await logged_ids(policy_pool, answered)) == 1000

        await until(all_logged, "every answered decision in the decision log")
    logged = await logged_ids(policy_pool, answered)
    assert sorted(logged) == sorted(set(answered)) and len(set(answered)) == 1000
    assert await gap_rows(policy_pool) == gaps_before, "nothing was lost, so no gap is recorded"
    assert handoff.restarts >= 1
    assert value(WAL_REPLAYED) > replayed_before, "the new writer read what the killed one had not acknowledged"


@pytest.mark.integration
@pytest.mark.usefixtures("writer_env")
async def test_past_the_wal_cap_decide_is_unavailable_until_the_writer_catches_up(
        policy_pool: asyncpg.Pool, engine: OpaEngine, wal_dir: Path, infra: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A cap of a few decisions' records, and a writer that takes none of them while it is stopped.
    handoff = DecisionLogProcess(WalSettings(wal_dir, max_bytes=8 * 1024))
    async with running(handoff):
        # The server's and the client's identities (the writer, started, keeps the policy identity of IG_TLS_DIR).
        monkeypatch.delenv("IG_TLS_DIR")
        for name, setting in infra.identities.env().items():
            monkeypatch.setenv(name, setting)
        identities = Path(os.environ["IG_IDENTITIES"])
        security = ServerSecurity(WorkloadCertificate(identities / "policy"),
                                  AuthorizationTable.load(Path(os.environ["IG_AUTHZ_TABLE"])))
        port = free_port()
        deciding = DecisionService(engine, handoff, region="region-a", clock=SettableClock())
        server, _ = build_grpc_server([policy_grpc_service(deciding)], host="127.0.0.1", port=port,
                                      security=security)
        await server.start()
        channel = aio_channel_as("gateway", f"127.0.0.1:{port}")
        writer = handoff.writer_pid
        assert writer is not None
        try:
            stub = policy_pb2_grpc.PolicyServiceStub(channel)
            request = proto_from_input(INPUT)
            os.kill(writer, signal.SIGSTOP)
            answered: list[str] = []
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                for _ in range(100):
                    answered.append((await stub.Decide(request, timeout=30)).decision_id)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "IG_DECISION_LOG_WAL_MAX_MB" in (refused.value.details() or "")
            assert 0 < len(answered) < 100
            os.kill(writer, signal.SIGCONT)

            async def accepted_again() -> bool:
                try:
                    answered.append((await stub.Decide(request, timeout=30)).decision_id)
                except grpc.aio.AioRpcError as error:
                    assert error.code() == grpc.StatusCode.UNAVAILABLE
                    return False
                return True

            await until(accepted_again, "decisions accepted once the writer has taken the WAL")

            async def all_logged() -> bool:
                return len(await logged_ids(policy_pool, answered)) == len(answered)

            await until(all_logged, "every answered decision in the log")
        finally:
            os.kill(writer, signal.SIGCONT)
            await channel.close()
            await server.stop(grace=1)


@pytest.mark.integration
@pytest.mark.usefixtures("writer_env")
async def test_a_torn_tail_is_recorded_as_a_gap_of_exactly_its_records_once(policy_pool: asyncpg.Pool,
                                                                            wal_dir: Path) -> None:
    # A service that wrote three group commits of 10 and died while the third was reaching the disk: the last
    # three records of the third batch never arrived.
    batches = [[decision() for _ in range(10)] for _ in range(3)]
    wal = WriteAheadLog(WalSettings(wal_dir))
    wal.open()
    for batch in batches:
        done = [wal.append(encode_decision(INPUT, d)) for d in batch]
        await wal.commit()
        await asyncio.gather(*done)
    await wal.close()
    (_, path), = segments(wal_dir)
    lost = sum(RECORD.size + len(encode_decision(INPUT, d)) for d in batches[2][-3:])
    with path.open("r+b") as file:
        file.truncate(path.stat().st_size - lost + 5)  # five bytes of the first lost record did arrive
    intact = [d.decision_id for b in batches for d in b][:-3]
    gaps_before = await gap_rows(policy_pool)
    pristine = wal_dir.with_name("pristine")
    shutil.copytree(wal_dir, pristine)
    for _ in range(2):  # the same WAL read again, as after a crash between the insert and the acknowledgement
        handoff = DecisionLogProcess(WalSettings(wal_dir))
        async with running(handoff):

            async def intact_logged() -> bool:
                return len(await logged_ids(policy_pool, intact)) == 27

            await until(intact_logged, "the 27 intact decisions")

            async def gap_recorded() -> bool:
                return await gap_rows(policy_pool) > gaps_before

            await until(gap_recorded, "the gap row")

            async def torn_segment_acknowledged() -> bool:
                return (wal_dir / "acknowledged").exists()

            await until(torn_segment_acknowledged, "the writer past the torn segment")
        shutil.rmtree(wal_dir)
        shutil.copytree(pristine, wal_dir)
    rows = await policy_pool.fetch(f"SELECT dropped, source FROM {SCHEMA}.decision_log_gaps ORDER BY id DESC LIMIT 2")
    assert await gap_rows(policy_pool) == gaps_before + 1, "read twice, recorded once"
    assert rows[0]["dropped"] == 3 and rows[0]["source"].startswith("wal ")
    assert await logged_ids(policy_pool, [d.decision_id for d in batches[2][-3:]]) == []
