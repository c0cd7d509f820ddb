"""LedgerService.AppendBatch: many appends in one call, in request order, each checked before any is queued."""

from __future__ import annotations

import asyncio
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import asyncpg
import grpc
import pytest
from ig.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from ig_common.grpc_client import channel_as
from ig_evidence.testing import RunningEvidence, evidence_on_own_database

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def service(infra: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEvidence]:
    with evidence_on_own_database(infra, "ig_ledger_batch", tmp_path_factory.mktemp("blobs")) as running:
        # one entry first: an empty ledger has no checkpoint whose size the refusals could be compared with
        stub(running).Append(ledger_pb2.AppendRequest(kind="release.batch-test", subject="seed", payload=b"s",
                                                            tenant="alpha"))
        yield running


def stub(service: RunningEvidence, identity: str = "release") -> ledger_pb2_grpc.LedgerServiceStub:
    return ledger_pb2_grpc.LedgerServiceStub(channel_as(identity, service.grpc_target))


def entries(run: str, count: int, kind: str = "release.batch-test") -> list[ledger_pb2.AppendRequest]:
    return [ledger_pb2.AppendRequest(kind=kind, subject=f"{run}-{i}", payload=b"%d" % i, deduplicate=True,
                                     tenant="alpha") for i in range(count)]


def size(service: RunningEvidence) -> int:
    return stub(service).Checkpoint(ledger_pb2.CheckpointRequest()).tree_size


def test_a_batch_is_appended_in_request_order_and_replays_as_existing(service: RunningEvidence) -> None:
    run = uuid.uuid4().hex[:8]
    first = stub(service).AppendBatch(ledger_pb2.AppendBatchRequest(entries=entries(run, 300)))
    seqs = [e.entry.seq for e in first.entries]
    assert [e.entry.subject for e in first.entries] == [f"{run}-{i}" for i in range(300)]
    assert seqs == list(range(seqs[0], seqs[0] + 300)) and not any(e.existing for e in first.entries)
    again = stub(service).AppendBatch(ledger_pb2.AppendBatchRequest(entries=entries(run, 300)))
    assert [e.entry.seq for e in again.entries] == seqs and all(e.existing for e in again.entries)


@pytest.mark.parametrize(("identity", "batch", "code", "field"), [
    ("release", [], grpc.StatusCode.INVALID_ARGUMENT, "entries: 1..1000"),
    ("release", entries("x", 1001), grpc.StatusCode.INVALID_ARGUMENT, "entries: 1..1000"),
    ("release", [*entries("y", 5), ledger_pb2.AppendRequest(kind="ig.audit.access", subject="s", payload=b"{}",
                                                            tenant="alpha")],
     grpc.StatusCode.PERMISSION_DENIED, "entries[5].kind"),
    ("release", [*entries("z", 2), ledger_pb2.AppendRequest(kind="", subject="s", tenant="alpha")],
     grpc.StatusCode.INVALID_ARGUMENT, "entries[2]"),
    ("release", [ledger_pb2.AppendRequest(kind="release.batch-test", subject="s", payload=b"x" * (1 << 20 | 1),
                                          tenant="alpha")],
     grpc.StatusCode.INVALID_ARGUMENT, "entries[0].payload"),
    ("release", [*entries("t", 2), ledger_pb2.AppendRequest(kind="release.batch-test", subject="s")],
     grpc.StatusCode.INVALID_ARGUMENT, "entries[2].tenant"),
    # gamma is not the release job's (policies/authz/grpc-methods.yaml grants it alpha and beta)
    ("release", [*entries("g", 1), ledger_pb2.AppendRequest(kind="release.batch-test", subject="s", tenant="gamma")],
     grpc.StatusCode.PERMISSION_DENIED, "entries[1].tenant"),
    ("operator", entries("w", 1), grpc.StatusCode.PERMISSION_DENIED, "AppendBatch"),
])
def test_a_bad_batch_is_refused_naming_the_entry_and_appends_nothing(
        service: RunningEvidence, identity: str, batch: list[ledger_pb2.AppendRequest], code: grpc.StatusCode,
        field: str) -> None:
    before = size(service)
    with pytest.raises(grpc.RpcError) as refused:
        stub(service, identity).AppendBatch(ledger_pb2.AppendBatchRequest(entries=batch))
    assert refused.value.code() == code and field in refused.value.details(), refused.value.details()
    assert size(service) == before


def test_each_batch_is_one_transaction_at_consecutive_seqs(service: RunningEvidence) -> None:
    """A call is one group the writer commits whole: entries of other callers, single or batched, never land
    between its entries, even when a batch is larger than the writer's usual batch."""
    run = uuid.uuid4().hex[:8]

    def batch(n: int) -> list[int]:
        answer = stub(service).AppendBatch(ledger_pb2.AppendBatchRequest(entries=entries(f"{run}-b{n}", 700)))
        return [e.entry.seq for e in answer.entries]

    def singles(n: int) -> list[int]:
        client = stub(service)
        return [client.Append(request).entry.seq for request in entries(f"{run}-s{n}", 40)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        batches = [pool.submit(batch, n) for n in range(4)]
        for n in range(4):
            pool.submit(singles, n)
        seqs = [future.result() for future in batches]
    for got in seqs:
        assert got == list(range(got[0], got[0] + 700))
    # One transaction per call: PostgreSQL's xmin names the transaction that inserted a row.
    inserted_by = asyncio.run(_transactions(service.database_url, [(got[0], got[-1]) for got in seqs]))
    assert inserted_by == [1, 1, 1, 1]


async def _transactions(database_url: str, ranges: list[tuple[int, int]]) -> list[int]:
    conn = await asyncpg.connect(database_url)  # the superuser's: xmin is a system column the test reads directly
    try:
        return [await conn.fetchval("SELECT count(DISTINCT xmin::text) FROM evidence.ledger_entries "
                                    "WHERE seq BETWEEN $1 AND $2", first, last) for first, last in ranges]
    finally:
        await conn.close()


def test_append_metrics_are_labelled_by_table_row_not_by_caller_chosen_kind(service: RunningEvidence) -> None:
    run = uuid.uuid4().hex[:8]
    stub(service).AppendBatch(ledger_pb2.AppendBatchRequest(entries=[
        ledger_pb2.AppendRequest(kind=f"release.minted-{run}-{i}", subject="s", payload=b"p", tenant="alpha")
        for i in range(3)]))
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{service.http_port}/metrics", timeout=10).read().decode()
    appends = [line for line in metrics.splitlines() if line.startswith("ig_ledger_appends_total{")]
    assert any('kind="release.*"' in line for line in appends), appends
    assert run not in metrics  # a kind a caller made up is no series of its own
