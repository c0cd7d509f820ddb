"""make bench-portal: 200 concurrent API clients listing and downloading through the portal for 60 s, then the
evidence service's raw GetArtifact and raw ledger Append at the same concurrency, in the same run, on the same
stack (every portal access waits for one Append, so Append's throughput bounds the portal's).

Prints p50/p95/p99 per endpoint and throughput; writes $ARTIFACTS/bench/portal.json. The portal runs with rate
limits raised (the benchmark measures the path, not the limiter; the limiter's own SQL upsert still runs on every
request). Knobs: BENCH_CLIENTS (200), BENCH_SECONDS (60), BENCH_GRPC_SECONDS (20).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path

import asyncpg
import grpc
import httpx
from ig.evidence.v1 import evidence_pb2, evidence_pb2_grpc
from ig.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from ig_infra.components import Kafka, Postgres
from ig_infra.paths import Paths

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "testing"))
from portal_stack import RELEASE, running_stack

CLIENTS = int(os.environ.get("BENCH_CLIENTS", "200"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "60"))
GRPC_SECONDS = float(os.environ.get("BENCH_GRPC_SECONDS", "20"))
OUT = Path(os.environ.get("ARTIFACTS", "artifacts")) / "bench" / "portal.json"


def summary(samples: list[float], errors: int, seconds: float) -> dict[str, float]:
    ordered = sorted(samples)
    if not ordered:
        return {"count": 0, "errors": errors}

    def pct(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000, 2)

    return {"count": len(ordered), "errors": errors, "p50_ms": pct(0.50), "p95_ms": pct(0.95), "p99_ms": pct(0.99),
            "mean_ms": round(statistics.fmean(ordered) * 1000, 2), "per_second": round(len(ordered) / seconds, 1)}


async def portal_load(base: str, token: str, artifact_ids: list[str]) -> tuple[dict[str, list[float]],
                                                                             dict[str, int], float]:
    latencies: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, int] = defaultdict(int)
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=60) as http:
        deadline = time.monotonic() + SECONDS

        async def timed(name: str, url: str) -> httpx.Response | None:
            started = time.perf_counter()
            try:
                response = await http.get(url)
            except httpx.HTTPError:
                errors[name] += 1
                return None
            if response.status_code != 200:
                errors[name] += 1
                return None
            latencies[name].append(time.perf_counter() - started)
            return response

        async def client(number: int) -> None:
            turn = number
            while time.monotonic() < deadline:
                turn += 1
                await timed("GET / (catalog page)", "/")
                await timed("GET /audit/releases", "/audit/releases")
                await timed("GET /audit/artifacts", f"/audit/artifacts?release={RELEASE}")
                artifact_id = artifact_ids[turn % len(artifact_ids)]
                link = await timed("GET /audit/download/{id}", f"/audit/download/{artifact_id}")
                if link is not None:
                    await timed("GET /audit/files/{id} (watermarked)", link.json()["url"])

        started = time.monotonic()
        await asyncio.gather(*(client(n) for n in range(CLIENTS)))
        return latencies, errors, time.monotonic() - started


async def raw_get_artifact(target: str, artifact_ids: list[str]) -> tuple[list[float], int, float]:
    latencies: list[float] = []
    errors = 0
    async with grpc.aio.insecure_channel(target) as channel:
        stub = evidence_pb2_grpc.EvidenceServiceStub(channel)
        deadline = time.monotonic() + GRPC_SECONDS

        async def client(number: int) -> None:
            nonlocal errors
            turn = number
            while time.monotonic() < deadline:
                turn += 1
                started = time.perf_counter()
                try:
                    async for _ in stub.GetArtifact(evidence_pb2.GetArtifactRequest(
                            artifact_id=artifact_ids[turn % len(artifact_ids)], tenant="alpha"), timeout=60):
                        pass
                except grpc.aio.AioRpcError:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - started)

        started = time.monotonic()
        await asyncio.gather(*(client(n) for n in range(CLIENTS)))
        return latencies, errors, time.monotonic() - started


async def raw_ledger_append(target: str) -> tuple[list[float], int, float]:
    """The ledger's Append alone at the same concurrency: the ceiling of any fail-closed, ledger-first path."""
    latencies: list[float] = []
    errors = 0
    async with grpc.aio.insecure_channel(target) as channel:
        stub = ledger_pb2_grpc.LedgerServiceStub(channel)
        deadline = time.monotonic() + GRPC_SECONDS

        async def client(number: int) -> None:
            nonlocal errors
            turn = 0
            while time.monotonic() < deadline:
                turn += 1
                started = time.perf_counter()
                try:
                    await stub.Append(ledger_pb2.AppendRequest(kind="bench.portal", subject=f"bench/{number}",
                                                               payload=f"{number}:{turn}".encode()), timeout=60)
                except grpc.aio.AioRpcError:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - started)

        started = time.monotonic()
        await asyncio.gather(*(client(n) for n in range(CLIENTS)))
        return latencies, errors, time.monotonic() - started


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), to express cost independent of machine load."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def admin(postgres: Postgres, statement: str) -> None:
    conn = await asyncpg.connect(postgres.dsn("postgres"))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def main() -> None:
    paths = Paths.from_environment()
    postgres, kafka = Postgres(paths), Kafka(paths)
    database = f"ig_bench_portal_{uuid.uuid4().hex[:8]}"
    asyncio.run(admin(postgres, f"CREATE DATABASE {database}"))
    try:
        with running_stack(postgres.dsn(database), kafka.bootstrap) as stack:
            portal_process, base = stack.portal("portal-bench", rate_requests_per_minute="100000000",
                                   rate_downloads_per_minute="100000000")
            token = stack.token("alpha-auditor")
            listed = httpx.get(f"{base}/audit/artifacts", params={"release": RELEASE},
                               headers={"Authorization": f"Bearer {token}"}, timeout=30).json()
            ids = [a["id"] for a in listed["artifacts"] if a["size"] < 64 * 1024]
            print(f"portal: {CLIENTS} clients for {SECONDS:.0f} s over {len(ids)} artifacts ...", flush=True)
            cpu_before = cpu_seconds(portal_process.popen.pid)
            latencies, errors, elapsed = asyncio.run(portal_load(base, token, ids))
            portal_cpu = cpu_seconds(portal_process.popen.pid) - cpu_before
            load = os.getloadavg()
            print(f"raw GetArtifact: {CLIENTS} clients for {GRPC_SECONDS:.0f} s ...", flush=True)
            raw, raw_errors, raw_elapsed = asyncio.run(raw_get_artifact(stack.evidence_grpc, ids))
            print(f"raw ledger Append: {CLIENTS} clients for {GRPC_SECONDS:.0f} s ...", flush=True)
            appends, append_errors, append_elapsed = asyncio.run(raw_ledger_append(stack.evidence_grpc))
    finally:
        asyncio.run(admin(postgres, f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
    endpoints = {name: summary(samples, errors.get(name, 0), elapsed) for name, samples in sorted(latencies.items())}
    total = sum(len(s) for s in latencies.values())
    result = {
        "clients": CLIENTS, "seconds": round(elapsed, 1), "portal_requests_per_second": round(total / elapsed, 1),
        "endpoints": endpoints,
        "portal_cpu_ms_per_request": round(portal_cpu * 1000 / max(1, total), 2),
        "load_average_1m_after_portal_phase": round(load[0], 1),
        "raw_get_artifact": summary(raw, raw_errors, raw_elapsed),
        "raw_ledger_append": summary(appends, append_errors, append_elapsed),
        "goal": {"catalog_page_p95_ms_max": 50,
                 "catalog_page_p95_ms": endpoints.get("GET / (catalog page)", {}).get("p95_ms")},
        "note": "one 2-core machine runs the clients, the portal, the evidence service, PostgreSQL and Kafka",
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'endpoint':44} {'count':>7} {'err':>5} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'req/s':>7}")
    for name, row in [*endpoints.items(), ("gRPC GetArtifact (raw, evidence)", result["raw_get_artifact"]),
                      ("gRPC ledger Append (raw, evidence)", result["raw_ledger_append"])]:
        print(f"{name:44} {row['count']:>7} {row['errors']:>5} {row.get('p50_ms', 0):>8} {row.get('p95_ms', 0):>8} "
              f"{row.get('p99_ms', 0):>8} {row.get('per_second', 0):>7}")
    print(f"portal throughput {result['portal_requests_per_second']} req/s, "
          f"{result['portal_cpu_ms_per_request']} ms portal CPU per request, load average {load[0]:.1f} "
          f"on {os.cpu_count()} cores; wrote {OUT}")


if __name__ == "__main__":
    main()
