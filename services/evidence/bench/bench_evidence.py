"""make bench-evidence: bundle throughput vs sha256sum (same files, same run), memory, ledger appends/s, verify time.

Figures are printed and written to $ARTIFACTS/bench/evidence.json. No timing is asserted anywhere.
IG_BENCH_PHASES (comma-separated, default all: bundle, ledger, grpc, tiles) runs only the phases named, e.g.
IG_BENCH_PHASES=grpc for the appends through the gRPC service alone; the JSON then holds only those.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import yaml
from bench_ledger_grpc import bench_appends_through_grpc
from bench_tiles import bench_tiles
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from ig_common.db import create_pool, prepare_service_schema
from ig_evidence.domain import merkle
from ig_evidence.store import MIGRATIONS, SCHEMA
from ig_evidence.store.ledger import CheckpointSigner, LedgerStore
from ig_infra.components import Postgres
from ig_infra.paths import Paths

REPO = Path(__file__).resolve().parents[3]
GIB = 1 << 30
BUNDLE_BYTES = int(os.environ.get("IG_BENCH_BUNDLE_BYTES", GIB))
CHAIN_ENTRIES = int(os.environ.get("IG_BENCH_CHAIN_ENTRIES", 100_000))
ALL_PHASES = ("bundle", "ledger", "grpc", "tiles")
PHASES = [p.strip() for p in os.environ.get("IG_BENCH_PHASES", ",".join(ALL_PHASES)).split(",") if p.strip()]
TYPES = ["load-report", "chaos-report", "aca-report", "dr-log", "rtbf-log", "residency-proof", "slo-report",
         "decision-coverage", "multi-region", "migration-timeline"]


def timed_child(args: list[str], env: dict[str, str] | None = None) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one child process, from wait4's rusage."""
    started = time.perf_counter()
    process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{args[:3]} failed: {process.stderr.read().decode() if process.stderr else ''}")
    return elapsed, usage.ru_maxrss


def make_inputs(root: Path, total: int) -> list[Path]:
    files = []
    per_type = total // len(TYPES)
    block = os.urandom(1 << 20)
    for index, artifact_type in enumerate(TYPES):
        (root / artifact_type).mkdir(parents=True)
        path = root / artifact_type / f"{artifact_type}.bin"
        with open(path, "wb") as out:
            remaining = per_type
            while remaining > 0:
                # Vary each MiB so nothing deduplicates or compresses trivially.
                chunk = (index.to_bytes(4, "big") + remaining.to_bytes(8, "big") + block)[: min(remaining, 1 << 20)]
                out.write(chunk)
                remaining -= len(chunk)
        files.append(path)
    return files


def bench_bundle(work: Path) -> dict[str, Any]:
    inputs = work / "inputs"
    files = make_inputs(inputs, BUNDLE_BYTES)
    total = sum(f.stat().st_size for f in files)
    keys = work / "keys"
    cli = [sys.executable, "-m", "ig_evidence.cli"]
    subprocess.run([*cli, "keygen", "--out", str(keys)], check=True, capture_output=True)
    contract = yaml.safe_load((REPO / "policies/evidence/release-contract.v1.yaml").read_text())
    contract["spec"]["ledgerAnchor"] = "optional"  # the bundle path is measured here; the ledger below
    (work / "contract.yaml").write_text(yaml.safe_dump(contract))
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1767225600"}

    def build(compression: str, source: Path = inputs) -> tuple[float, int]:
        return timed_child([*cli, "build", "--release", "v1.2.1", "--inputs", str(source), "--out",
                            str(work / f"out-{compression}"), "--key", str(keys / "cosign.key"), "--contract",
                            str(work / "contract.yaml"), "--compression", compression, "--force",
                            "--repo-root", str(REPO)], env)

    sha256sum = [shutil.which("sha256sum") or "sha256sum", *map(str, files)]
    timed_child(sha256sum)  # warm the page cache so both sides read from memory
    sums, builds_plain, builds_gzip = [], [], []
    for _ in range(2):
        sums.append(timed_child(sha256sum))
        builds_gzip.append(build("gzip"))
        builds_plain.append(build("none"))
    small = work / "small"
    make_inputs(small, 64 << 20)
    small_rss = build("none", small)[1]
    sha_s = min(s[0] for s in sums)
    plain_s = min(b[0] for b in builds_plain)
    gzip_s = min(b[0] for b in builds_gzip)
    mib = total / (1 << 20)
    return {
        "bundle_bytes": total,
        "sha256sum_seconds": round(sha_s, 3), "sha256sum_mib_s": round(mib / sha_s, 1),
        "build_tar_seconds": round(plain_s, 3), "build_tar_mib_s": round(mib / plain_s, 1),
        "build_tar_vs_sha256sum": round(sha_s / plain_s, 3),
        "build_targz_seconds": round(gzip_s, 3), "build_targz_mib_s": round(mib / gzip_s, 1),
        "build_targz_vs_sha256sum": round(sha_s / gzip_s, 3),
        "goal_judged_on": "the default build (tar.gz), as a release job runs it",
        "build_peak_rss_mib_1gib": round(max(b[1] for b in builds_plain + builds_gzip) / 1024, 1),
        "build_peak_rss_mib_64mib": round(small_rss / 1024, 1),
    }


async def bench_ledger(database_url: str, migration_database_url: str) -> dict[str, Any]:
    """As the service runs: the evidence runtime role appends through the ledger owner's SECURITY DEFINER
    function in a database laid out like the suite's (schema migrated by the evidence migrator role)."""
    schema = SCHEMA
    pool = await create_pool(database_url, max_size=10)
    await prepare_service_schema(pool, schema, MIGRATIONS, migration_database_url)
    signer = CheckpointSigner("bench.example/ledger", Ed25519PrivateKey.generate())
    results: dict[str, Any] = {}
    try:
        started = time.perf_counter()
        for _ in range(200):
            await pool.fetchval("SELECT 1")
        # Context for the append rates: on an idle machine this round trip is ~0.1 ms.
        results["postgres_roundtrip_ms"] = round((time.perf_counter() - started) / 200 * 1000, 3)
        shared = LedgerStore(pool, schema, signer)
        per_writer = 1500
        appended_at: dict[int, float] = {}  # seq -> when its Append was called

        async def writer(store: LedgerStore, n: int) -> None:
            for i in range(per_writer):
                called = time.perf_counter()
                entry, _ = await store.append("bench", f"w{n}", f"{n}:{i}".encode())
                appended_at[entry.fields.seq] = called

        started = time.perf_counter()
        async with integration_watch(database_url) as integrated_at:
            await asyncio.gather(*(writer(shared, n) for n in range(8)))
            results["appends_per_s_8_writers_one_service"] = round(8 * per_writer / (time.perf_counter() - started))
            await shared.tree.wait_for(max(appended_at))
        results["append_to_integrated_ms_8_writers"] = append_to_integrated(appended_at, integrated_at)
        replicas = [LedgerStore(await create_pool(database_url, max_size=2), schema, signer) for _ in range(8)]
        started = time.perf_counter()
        await asyncio.gather(*(writer(r, n) for n, r in enumerate(replicas)))
        results["appends_per_s_8_writers_8_replicas"] = round(8 * per_writer / (time.perf_counter() - started))
        for replica in replicas:
            await replica.close()
            await replica._pool.close()
        size = await shared.size()

        async def filler(n: int, count: int) -> None:
            for i in range(count):
                await shared.append("fill", "s", f"{n}:{i}".encode())

        missing = max(0, CHAIN_ENTRIES - size)
        started = time.perf_counter()
        await asyncio.gather(*(filler(n, missing // 64 + (1 if n < missing % 64 else 0)) for n in range(64)))
        results["fill_appends_per_s_64_concurrent"] = round(missing / (time.perf_counter() - started))
        await shared.close()
        fresh = LedgerStore(pool, schema, signer)
        started = time.perf_counter()
        report = await fresh.verify()
        results["verify_entries"] = report.entries_checked
        results["verify_ok"] = report.ok
        results["verify_seconds"] = round(time.perf_counter() - started, 3)
        started = time.perf_counter()
        tree_size, path, root, leaf = await fresh.inclusion_proof(CHAIN_ENTRIES // 3, 0)
        results["inclusion_proof_cold_seconds"] = round(time.perf_counter() - started, 3)
        started = time.perf_counter()
        _, path, root, leaf = await fresh.inclusion_proof(CHAIN_ENTRIES // 2, tree_size)
        results["inclusion_proof_warm_seconds"] = round(time.perf_counter() - started, 4)
        merkle.verify_inclusion(CHAIN_ENTRIES // 2 - 1, tree_size, leaf, path, root)
        results["inclusion_proof_hashes"] = len(path)
        started = time.perf_counter()
        await fresh.checkpoint(tree_size)
        results["checkpoint_seconds"] = round(time.perf_counter() - started, 4)
    finally:
        await pool.close()
    results["appending_role"] = "ig_evidence (runtime role; SECURITY DEFINER append owned by ig_ledger_owner)"
    return results


@contextlib.asynccontextmanager
async def integration_watch(database_url: str) -> AsyncIterator[list[tuple[float, int]]]:
    """(time, integrated size) each time the tree grows, polled every millisecond on a connection of its own."""
    seen: list[tuple[float, int]] = []
    conn = await asyncpg.connect(database_url)

    async def poll() -> None:
        while True:
            size = await conn.fetchval("SELECT size FROM evidence.ledger_tree")
            if not seen or size > seen[-1][1]:
                seen.append((time.perf_counter(), size))
            await asyncio.sleep(0.001)

    task = asyncio.ensure_future(poll())
    try:
        yield seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        size = await conn.fetchval("SELECT size FROM evidence.ledger_tree")  # the last advance, if not yet seen
        if not seen or size > seen[-1][1]:
            seen.append((time.perf_counter(), size))
        await conn.close()


def append_to_integrated(appended_at: dict[int, float], integrated_at: list[tuple[float, int]]) -> dict[str, float]:
    """From each Append's call to the tree (and so a checkpoint) including its entry, p50/p99/max in ms."""
    sizes = [size for _, size in integrated_at]
    delays = sorted(integrated_at[bisect.bisect_left(sizes, seq)][0] - called for seq, called in appended_at.items())
    return {"p50": round(delays[len(delays) // 2] * 1000, 1), "p99": round(delays[int(len(delays) * 0.99)] * 1000, 1),
            "max": round(delays[-1] * 1000, 1)}


def bench_database() -> tuple[dict[str, str], Any]:
    """A database laid out like the suite's; the evidence roles' DSNs there, and how to drop it."""
    postgres = Postgres(Paths.from_environment())
    name = f"ig_bench_evidence_{uuid.uuid4().hex[:6]}"
    postgres.provision(name)
    return (postgres.service_env("evidence", name),
            lambda: postgres.admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', transaction=False))


def main() -> None:
    unknown = set(PHASES) - set(ALL_PHASES)
    if unknown or not PHASES:
        sys.exit(f"IG_BENCH_PHASES: {sorted(unknown) or 'empty'}: name phases of {', '.join(ALL_PHASES)}")
    figures: dict[str, Any] = {"machine_cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()[0],
                               "phases": PHASES}
    if "bundle" in PHASES:
        with tempfile.TemporaryDirectory(prefix="ig-bench-evidence-", dir="/var/tmp") as work:
            figures["bundle"] = bench_bundle(Path(work))
    if "ledger" in PHASES:
        roles, drop = bench_database()
        try:
            figures["ledger"] = asyncio.run(bench_ledger(roles["IG_DATABASE_URL"],
                                                         roles["IG_MIGRATION_DATABASE_URL"]))
        finally:
            drop()
    if "grpc" in PHASES:
        print("ledger appends through the gRPC service (bench_ledger_grpc.py):", flush=True)
        figures["ledger_grpc"] = bench_appends_through_grpc()
        for load, found in figures["ledger_grpc"].items():
            if isinstance(found, dict):
                print(f"  {load}: {found['entries_per_s']} entries (calls for the baseline)/s, call p50 "
                      f"{found['call_p50_ms']} ms, p99 {found['call_p99_ms']} ms, service CPU "
                      f"{found['service_cpu_ms_per_entry']} ms per entry, its PostgreSQL backends' CPU "
                      f"{found['postgres_cpu_ms_per_entry']} ms per entry, outcomes {found['outcomes']}", flush=True)
    if "tiles" in PHASES:
        print("ledger tiles through the service (bench_tiles.py):", flush=True)
        with tempfile.TemporaryDirectory(prefix="ig-bench-tiles-", dir="/var/tmp") as work:
            figures["tiles"] = bench_tiles(Path(work))
    if "bundle" in PHASES and "ledger" in PHASES:
        _summarise(figures)
    figures["load_average_at_end"] = os.getloadavg()[0]
    print(f"(machine: {os.cpu_count()} CPUs, load average {figures['load_average_at_start']:.1f} at start, "
          f"{figures['load_average_at_end']:.1f} at end: other work shares these CPUs)")
    out = Path(os.environ.get("ARTIFACTS", REPO / "artifacts")) / "bench" / "evidence.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {out}")


def _summarise(figures: dict[str, Any]) -> None:
    bundle, ledger = figures["bundle"], figures["ledger"]
    print(f"bundle {bundle['bundle_bytes'] / GIB:.2f} GiB: sha256sum {bundle['sha256sum_mib_s']} MiB/s | "
          f"ig-evidence build (default tar.gz) {bundle['build_targz_mib_s']} MiB/s = "
          f"{bundle['build_targz_vs_sha256sum']:.0%} of sha256sum (goal >= 80 %) | uncompressed tar "
          f"{bundle['build_tar_mib_s']} MiB/s = {bundle['build_tar_vs_sha256sum']:.0%} | peak RSS "
          f"{bundle['build_peak_rss_mib_1gib']} MiB (64 MiB bundle: {bundle['build_peak_rss_mib_64mib']} MiB)")
    print(f"ledger (PostgreSQL round trip {ledger['postgres_roundtrip_ms']} ms): "
          f"{ledger['appends_per_s_8_writers_one_service']} appends/s with 8 writers on one service, "
          f"{ledger['appends_per_s_8_writers_8_replicas']}/s with 8 writers on 8 replicas (goal >= 1,000/s); "
          f"append -> integrated p99 {ledger['append_to_integrated_ms_8_writers']['p99']} ms | "
          f"verify {ledger['verify_entries']} entries in {ledger['verify_seconds']} s (ok={ledger['verify_ok']}) | "
          f"inclusion proof {ledger['inclusion_proof_cold_seconds']} s, again "
          f"{ledger['inclusion_proof_warm_seconds']} s ({ledger['inclusion_proof_hashes']} hashes)")


if __name__ == "__main__":
    main()
