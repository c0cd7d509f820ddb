"""The tiled ledger at scale, through the real service: proof latency and RSS at 10 k and at millions of entries,
integration rate, a full Verify; `make bench-evidence` runs it after bench_evidence.py's figures (or alone:
``python services/evidence/bench/bench_tiles.py``; IG_BENCH_TILE_SIZES=10000,1000000[,10000000]).

Building millions of entries through Append would take most of an hour here, so a bulk loader writes the same
rows appends write (the same chain: ``chain.next_entry`` for each, consecutive seqs, each linked to the one before)
with COPY, the append trigger off for its session (superuser; the outbox events of appends are not written). The
tiles are NOT bulk-made: the running service's own integrator builds them from those rows exactly as it does after
appends. The check that rows, tiles and root are right is the service's Verify at the end: it re-hashes the whole
chain, rebuilds every tile from the entries and compares each with the stored one, and compares the integrated root
with a compact-range root over the same entries.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import grpc
from ig.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from ig_common.grpc_client import aio_channel_as
from ig_evidence.domain import merkle
from ig_evidence.domain.chain import next_entry
from ig_infra.components import Identities, Kafka, Opa, Postgres
from ig_infra.paths import Paths
from ig_infra.process import free_port
from ig_infra.services import tenant_residency_env

REPO = Path(__file__).resolve().parents[3]
SIZES = [int(s) for s in os.environ.get("IG_BENCH_TILE_SIZES", "10000,1000000").split(",")]
PROOFS = int(os.environ.get("IG_BENCH_TILE_PROOFS", 2000))
VERIFY = os.environ.get("IG_BENCH_TILE_VERIFY", "1") != "0"  # 0: no full Verify at the end (6 min at 10 M here)
# A database to keep between runs (made when missing, never dropped): the 10 M entries are loaded once, and a later
# run with the same name times the proofs at once. Unset: a fresh database per run, dropped after it.
KEEP_DATABASE = os.environ.get("IG_BENCH_TILE_DATABASE", "")
COPY_CHUNK = 50_000
_COLUMNS = ["seq", "ts", "kind", "subject", "payload", "payload_sha256", "prev_hash", "entry_hash", "tenant"]


async def bulk_load(superuser_dsn: str, target: int) -> float:
    """Entries up to seq ``target`` as appends would write them; returns entries/s."""
    conn = await asyncpg.connect(superuser_dsn)
    try:
        size, prev = await conn.fetchrow("SELECT size, head_hash FROM evidence.ledger_head")
        if size >= target:  # a kept database loaded by an earlier run
            return 0.0
        first, started = size, time.perf_counter()
        await conn.execute("SET session_replication_role = replica")  # the append trigger, off
        while size < target:
            ts = datetime.now(UTC)
            records = []
            for seq in range(size, min(target, size + COPY_CHUNK)):
                payload = f"bulk {seq}".encode()
                fields, digest = next_entry(seq, prev, ts, "bench.bulk", f"s{seq % 1000}", payload)
                records.append((fields.seq, ts, fields.kind, fields.subject, payload, fields.payload_sha256,
                                fields.prev_hash, digest, "bench"))
                prev = digest
            await conn.copy_records_to_table("ledger_entries", schema_name="evidence", records=records,
                                             columns=_COLUMNS)
            size = records[-1][0]
        await conn.execute("UPDATE evidence.ledger_head SET size = $1, head_hash = $2", size, prev)
        rate = (target - first) / (time.perf_counter() - started)
        # What a bulk load is followed by anyway; else autovacuum and the checkpointer work through the new rows
        # while the proofs are timed (at 10 M: gigabytes of writes and a p99 several times the steady one).
        await conn.execute("VACUUM (ANALYZE) evidence.ledger_entries")
        await conn.execute("CHECKPOINT")
        return rate
    finally:
        await conn.close()


async def settle_tiles(superuser_dsn: str) -> float:
    """VACUUM (ANALYZE) of the tiles the integrator wrote after the load, and a CHECKPOINT; returns the seconds."""
    conn = await asyncpg.connect(superuser_dsn)
    try:
        started = time.perf_counter()
        await conn.execute("VACUUM (ANALYZE) evidence.ledger_tiles")
        await conn.execute("CHECKPOINT")
        return round(time.perf_counter() - started, 2)
    finally:
        await conn.close()


@contextmanager
def running_service(env: dict[str, str], log: Path) -> Iterator[tuple[str, int]]:
    from ig_release.suite import service

    grpc_port = free_port()
    env = {**env, "IG_GRPC_PORT": str(grpc_port), "IG_PUBLIC_PORT": str(free_port()),
           "IG_BLOB_STORE_PATH": str(log.parent / "blobs"), "IG_LOG_LEVEL": "WARNING"}
    with service("ig_evidence.app", env, log, free_port(), timeout=120):
        pid = int(_pid_listening(grpc_port))
        yield f"127.0.0.1:{grpc_port}", pid


def _pid_listening(port: int) -> str:
    import subprocess

    out = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    return out.split("pid=", 1)[1].split(",", 1)[0]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50_ms": round(statistics.median(ordered) * 1000, 3),
            "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 3),
            "max_ms": round(ordered[-1] * 1000, 3)}


async def wait_integrated(stub: ledger_pb2_grpc.LedgerServiceStub, size: int) -> float:
    """Seconds until the service's integrator has the tree at ``size`` (Checkpoint(size) answers)."""
    started = time.perf_counter()
    while True:
        try:
            await stub.Checkpoint(ledger_pb2.CheckpointRequest(tree_size=size), timeout=30)
            return time.perf_counter() - started
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE:
                raise


async def proof_latencies(stub: ledger_pb2_grpc.LedgerServiceStub, size: int) -> dict[str, Any]:
    """One client, one call at a time: the latency of each proof, verified here against the checkpoint's root."""
    rng = random.Random(size)
    head = await stub.Checkpoint(ledger_pb2.CheckpointRequest(tree_size=size))
    root = bytes.fromhex(head.root_hash)
    inclusion, consistency = [], []
    for _ in range(PROOFS):
        seq = rng.randint(1, size)
        started = time.perf_counter()
        proof = await stub.InclusionProof(ledger_pb2.InclusionProofRequest(seq=seq, tree_size=size))
        inclusion.append(time.perf_counter() - started)
        merkle.verify_inclusion(seq - 1, size, bytes.fromhex(proof.leaf_hash), [bytes.fromhex(h) for h in
                                                                               proof.hashes], root)
    for _ in range(PROOFS):
        first = rng.randint(1, size - 1)
        started = time.perf_counter()
        await stub.ConsistencyProof(ledger_pb2.ConsistencyProofRequest(first_size=first, second_size=size))
        consistency.append(time.perf_counter() - started)
    return {"inclusion": percentiles(inclusion), "consistency": percentiles(consistency),
            "inclusion_hashes": len(proof.hashes)}


async def measure(target: str, pid: int, superuser_dsn: str) -> dict[str, Any]:
    stub = ledger_pb2_grpc.LedgerServiceStub(aio_channel_as("bench", target))
    figures: dict[str, Any] = {"rss_mib_at_start": round(rss_mib(pid), 1), "sizes": {}}
    for size in SIZES:
        load_rate = await bulk_load(superuser_dsn, size)
        integrate_seconds = await wait_integrated(stub, size)
        at: dict[str, Any] = {"bulk_load_entries_per_s": round(load_rate),
                              "integration_seconds_after_load": round(integrate_seconds, 2)}
        if load_rate:
            # Timed at once, the proofs meet what a load of millions leaves behind (the tiles the integrator has
            # just written, their first reads, autovacuum): a p99 twice the settled one at 10 M. Kept as a figure
            # of its own; the judged one follows what a steady ledger's autovacuum does anyway.
            at["just_after_load"] = await proof_latencies(stub, size)
            print(f"  {size:,} entries, just after the load: inclusion p50 / p99 "
                  f"{at['just_after_load']['inclusion']['p50_ms']} / {at['just_after_load']['inclusion']['p99_ms']} ms",
                  flush=True)
            at["settle_seconds"] = await settle_tiles(superuser_dsn)
        at.update(await proof_latencies(stub, size))
        at["service_rss_mib_after_proofs"] = round(rss_mib(pid), 1)
        figures["sizes"][size] = at
        print(f"  {size:,} entries: inclusion p50 {at['inclusion']['p50_ms']} ms, p99 {at['inclusion']['p99_ms']} ms;"
              f" consistency p50 {at['consistency']['p50_ms']} ms, p99 {at['consistency']['p99_ms']} ms; "
              f"service RSS {at['service_rss_mib_after_proofs']} MiB; integrated "
              f"{integrate_seconds:.1f} s after the load", flush=True)
    if not VERIFY:
        return figures
    started = time.perf_counter()
    report = await stub.Verify(ledger_pb2.VerifyRequest(), timeout=3600)
    seconds = time.perf_counter() - started
    figures["verify"] = {"ok": report.ok, "entries": report.entries_checked, "seconds": round(seconds, 1),
                         "entries_per_s": round(report.entries_checked / seconds), "message": report.message}
    figures["service_rss_mib_after_verify"] = round(rss_mib(pid), 1)
    print(f"  Verify (chain, every tile, root): ok={report.ok} {report.entries_checked:,} entries in {seconds:.1f} s "
          f"= {report.entries_checked / seconds:,.0f}/s; service RSS after it {figures['service_rss_mib_after_verify']}"
          " MiB", flush=True)
    return figures


def bench_tiles(work: Path) -> dict[str, Any]:
    paths = Paths.from_environment()
    postgres = Postgres(paths)
    name = KEEP_DATABASE or f"ig_bench_tiles_{uuid.uuid4().hex[:6]}"
    postgres.provision(name)
    env = {**Identities(paths).env(), **Kafka(paths).env(), **Opa(paths).env(), **tenant_residency_env(paths),
           **postgres.service_env("evidence", name)}
    os.environ.update(Identities(paths).env())  # this process is a client too, as "bench"
    try:
        with running_service(env, work / "evidence.log") as (target, pid):
            return asyncio.run(measure(target, pid, postgres.dsn(name)))
    finally:
        if not KEEP_DATABASE:
            postgres.admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', transaction=False)


def main() -> None:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="ig-bench-tiles-", dir="/var/tmp") as work:
        figures = bench_tiles(Path(work))
    out = Path(os.environ.get("ARTIFACTS", REPO / "artifacts")) / "bench" / "evidence-tiles.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
