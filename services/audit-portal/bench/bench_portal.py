"""make bench-portal: 200 concurrent API clients listing and downloading through the portal, then the evidence
service's raw GetArtifact and raw ledger Append at the same concurrency, in the same run, on the same stack
(every portal access waits for one Append, so Append bounds the portal).

Two client models (Little's law: with N closed-loop clients latency = N / throughput whatever the server does,
so 200 closed-loop clients on 2 shared cores can never see a 50 ms p95):
- auditors (the goal's model): 200 clients, each with its own connection, pausing an exponentially distributed
  think time (mean BENCH_THINK_SECONDS, 5 s) after every answer, as people and polling SDKs do, for
  BENCH_SECONDS (60 s). The offered load is about 200 / (5 s + latency) = ~40 requests/s.
- saturation: the same 200 clients closed-loop (no think time) for BENCH_SATURATION_SECONDS (30 s): the most the
  stack serves, and the latency that queueing for it costs.

Prints p50/p95/p99 per endpoint, throughput and CPU per request of the portal, the evidence service and the load
generator (load-independent figures), and first each service's idle CPU (ms per second with no request: the fixed
cost that a low request rate divides among few requests); writes $ARTIFACTS/bench/portal.json. The portal runs
with rate limits raised (the benchmark measures the path, not the refusals; every request still takes from its
buckets in PostgreSQL). Knobs: BENCH_CLIENTS (200), BENCH_SECONDS (60), BENCH_THINK_SECONDS (5),
BENCH_SATURATION_SECONDS (30), BENCH_GRPC_SECONDS (20). Then a 1 GiB download through the portal and by raw
GetArtifact, alternating (``large_download.py``; BENCH_DOWNLOAD_BYTES=0 skips it), and the access-log search over
1,000,000 loaded rows (``access_log_search.py``; BENCH_SEARCH_ROWS=0 skips it).
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
from collections import Counter, defaultdict
from pathlib import Path

import aiohttp
import grpc
import httpx
from ig.evidence.v1 import evidence_pb2, evidence_pb2_grpc
from ig.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from ig_common.grpc_client import aio_channel_as
from ig_infra.components import Identities, Kafka, Postgres
from ig_infra.paths import Paths
from ig_infra.process import process_cpu_seconds

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "testing"))
from portal_stack import RELEASE, running_stack

sys.path.insert(0, str(Path(__file__).resolve().parent))
import access_log_search  # the search phase, beside this file
import large_download  # the 1 GiB download phase, beside this file

CLIENTS = int(os.environ.get("BENCH_CLIENTS", "200"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "60"))
THINK_SECONDS = float(os.environ.get("BENCH_THINK_SECONDS", "5"))
SATURATION_SECONDS = float(os.environ.get("BENCH_SATURATION_SECONDS", "30"))
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


STEPS = ("GET / (catalog page)", "GET /audit/releases", "GET /audit/artifacts", "GET /audit/download/{id}",
         "GET /audit/files/{id} (watermarked)")


async def portal_load(base: str, token: str, artifact_ids: list[str], *, seconds: float,
                      think_seconds: float) -> tuple[dict[str, list[float]], dict[str, int], float]:
    """CLIENTS API clients, each with its own connection, running catalog page, releases, artifacts, link and
    download in a loop; ``think_seconds`` is the mean pause after each answer (0 = closed loop: the next request
    leaves the moment the last answer arrives)."""
    latencies: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, int] = defaultdict(int)
    error_kinds: dict[str, Counter[str]] = defaultdict(Counter)  # what a failed request got: a status or an exception
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + seconds

    async def timed(http: aiohttp.ClientSession, name: str, url: str) -> bytes | None:
        started = time.perf_counter()
        try:
            async with http.get(url) as response:
                body = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as error:
            errors[name] += 1
            error_kinds[name][type(error).__name__] += 1
            return None
        if status != 200:
            errors[name] += 1
            error_kinds[name][f"HTTP {status}"] += 1
            return None
        latencies[name].append(time.perf_counter() - started)
        return body

    async def client(number: int) -> None:
        # One client (one connection) per auditor, as real SDKs run. aiohttp rather than one shared httpx pool:
        # the load generator shares the 2 cores with the portal, and a single httpx pool serving 200 coroutines
        # spent ~18 ms of CPU per request (twice the portal's), capping the whole run at ~50 requests/s.
        async with aiohttp.ClientSession(base_url=base, headers=headers, timeout=aiohttp.ClientTimeout(total=60),
                                         connector=aiohttp.TCPConnector(limit=1)) as http:
            if think_seconds:  # arrivals spread over the first think time instead of all at once
                await asyncio.sleep(random.uniform(0, think_seconds))
            turn = number
            link: bytes | None = None
            while True:
                turn += 1
                for step in STEPS:
                    if time.monotonic() >= deadline:
                        return
                    if step == STEPS[0]:
                        url = "/"
                    elif step == STEPS[1]:
                        url = "/audit/releases"
                    elif step == STEPS[2]:
                        url = f"/audit/artifacts?release={RELEASE}"
                    elif step == STEPS[3]:
                        url = f"/audit/download/{artifact_ids[turn % len(artifact_ids)]}"
                    elif link is not None:
                        url = json.loads(link)["url"]
                    else:
                        continue
                    body = await timed(http, step, url)
                    if step == STEPS[3]:
                        link = body
                    if think_seconds:  # never past the deadline: a phase's CPU window must not end in idle time
                        await asyncio.sleep(min(random.expovariate(1 / think_seconds),
                                                max(0.0, deadline - time.monotonic())))

    started = time.monotonic()
    await asyncio.gather(*(client(n) for n in range(CLIENTS)))
    return latencies, errors, error_kinds, time.monotonic() - started


async def raw_get_artifact(target: str, artifact_ids: list[str]) -> tuple[list[float], int, float]:
    latencies: list[float] = []
    errors = 0
    # As the release job, which the table lets read alpha's evidence without a forwarded user.
    async with aio_channel_as("release", target) as channel:
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
    async with aio_channel_as("bench", target) as channel:  # the table lets bench append bench.* kinds only
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
                                                               payload=f"{number}:{turn}".encode(), tenant="bench"),
                                      timeout=60)
                except grpc.aio.AioRpcError:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - started)

        started = time.monotonic()
        await asyncio.gather(*(client(n) for n in range(CLIENTS)))
        return latencies, errors, time.monotonic() - started


def own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def idle_cpu_ms_per_second(pids: dict[str, int], seconds: float = 5.0) -> dict[str, float]:
    """What each process burns with no request at all (relay polls, writer loops, the event loop's own timers):
    at a low request rate this fixed cost is a large share of the CPU per request."""
    time.sleep(3)  # let start-up work settle first (the first relay passes start their Kafka producers)
    before = {process: process_cpu_seconds(pid) for process, pid in pids.items()}
    time.sleep(seconds)
    return {process: round((process_cpu_seconds(pid) - before[process]) * 1000 / seconds, 2)
            for process, pid in pids.items()}


def run_phase(name: str, base: str, token: str, ids: list[str], pids: dict[str, int], *, seconds: float,
              think_seconds: float) -> dict[str, object]:
    """One load phase: per-endpoint latency, throughput, and CPU per request of each process involved."""
    model = (f"{CLIENTS} clients, each pausing an exponential think time (mean {think_seconds:g} s) after every "
             "answer" if think_seconds else f"{CLIENTS} closed-loop clients (no think time)")
    print(f"{name}: {model}, {seconds:.0f} s over {len(ids)} artifacts ...", flush=True)
    before = ({process: process_cpu_seconds(pid) for process, pid in pids.items()}
              | {"load generator": own_cpu_seconds()})
    latencies, errors, error_kinds, elapsed = asyncio.run(portal_load(base, token, ids, seconds=seconds,
                                                                      think_seconds=think_seconds))
    after = {process: process_cpu_seconds(pid) for process, pid in pids.items()} | {"load generator": own_cpu_seconds()}
    total = sum(len(s) for s in latencies.values())
    return {
        "client_model": model, "seconds": round(elapsed, 1), "requests_per_second": round(total / elapsed, 1),
        "endpoints": {step: summary(latencies[step], errors.get(step, 0), elapsed) for step in STEPS},
        "errors_by_kind": {step: dict(kinds) for step, kinds in error_kinds.items() if kinds},
        "cpu_ms_per_request": {process: round((after[process] - before[process]) * 1000 / max(1, total), 2)
                               for process in after},
        "load_average_1m": round(os.getloadavg()[0], 1),
    }


def print_phase(name: str, phase: dict[str, object]) -> None:
    print(f"\n{name}: {phase['client_model']}")
    print(f"{'endpoint':44} {'count':>7} {'err':>5} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'req/s':>7}")
    rows = phase.get("endpoints", {"": phase})
    assert isinstance(rows, dict)
    for endpoint, row in rows.items():
        print(f"{endpoint or name:44} {row['count']:>7} {row['errors']:>5} {row.get('p50_ms', 0):>8} "
              f"{row.get('p95_ms', 0):>8} {row.get('p99_ms', 0):>8} {row.get('per_second', 0):>7}")
    for endpoint, kinds in phase.get("errors_by_kind", {}).items():  # type: ignore[attr-defined]
        print(f"  errors of {endpoint}: {', '.join(f'{kind} x{n}' for kind, n in sorted(kinds.items()))}")
    if "cpu_ms_per_request" in phase:
        cpu = ", ".join(f"{process} {ms} ms" for process, ms in phase["cpu_ms_per_request"].items())  # type: ignore[attr-defined]
        print(f"throughput {phase['requests_per_second']} req/s; CPU per portal request: {cpu}; "
              f"load average {phase['load_average_1m']} on {os.cpu_count()} cores")


def main() -> None:
    paths = Paths.from_environment()
    postgres, kafka, identities = Postgres(paths), Kafka(paths), Identities(paths)
    identities.start()
    os.environ.update(identities.env())  # the stack's processes and this one find their certificates there
    database = f"ig_bench_portal_{uuid.uuid4().hex[:8]}"
    postgres.provision(database)  # laid out like the suite's: the stack's services run as their own roles
    try:
        with running_stack(postgres.dsn(database), kafka.bootstrap) as stack:
            portal_process, base = stack.portal("portal-bench", rate_requests_per_minute="100000000",
                                                rate_downloads_per_minute="100000000")
            pids = {"portal": portal_process.popen.pid, "evidence": stack.processes[0].popen.pid}
            token = stack.token("alpha-auditor")
            listed = httpx.get(f"{base}/audit/artifacts", params={"release": RELEASE},
                               headers={"Authorization": f"Bearer {token}"}, timeout=30).json()
            ids = [a["id"] for a in listed["artifacts"] if a["size"] < 64 * 1024]
            idle = idle_cpu_ms_per_second(pids)
            print(f"idle CPU (no requests): {', '.join(f'{p} {ms} ms/s' for p, ms in idle.items())}", flush=True)
            auditors = run_phase("auditors", base, token, ids, pids, seconds=SECONDS, think_seconds=THINK_SECONDS)
            saturation = run_phase("saturation", base, token, ids, pids, seconds=SATURATION_SECONDS,
                                   think_seconds=0)
            print(f"raw GetArtifact: {CLIENTS} clients for {GRPC_SECONDS:.0f} s ...", flush=True)
            raw, raw_errors, raw_elapsed = asyncio.run(raw_get_artifact(stack.evidence_grpc, ids))
            print(f"raw ledger Append: {CLIENTS} clients for {GRPC_SECONDS:.0f} s ...", flush=True)
            appends, append_errors, append_elapsed = asyncio.run(raw_ledger_append(stack.evidence_grpc))
            download = large_download.run(stack, base, token, pids) if large_download.SIZE else None
            # Last: the 1,000,000 loaded rows would otherwise sit in the database the phases above measure.
            search = access_log_search.run(stack.database_url, base, stack.token("alpha-admin"), pids) \
                if access_log_search.ROWS else None
    finally:
        postgres.admin_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)', transaction=False)
    catalog = auditors["endpoints"]["GET / (catalog page)"]  # type: ignore[index]
    result = {
        "clients": CLIENTS,
        "idle_cpu_ms_per_second": idle,
        "auditors": auditors,
        "saturation": saturation,
        "raw_get_artifact": summary(raw, raw_errors, raw_elapsed),
        "raw_ledger_append": summary(appends, append_errors, append_elapsed),
        "goal": {"catalog_page_p95_ms_max": 50, "client_model": auditors["client_model"],
                 "catalog_page_p95_ms": catalog.get("p95_ms"), "met": (catalog.get("p95_ms") or 1e9) <= 50},
        "large_download": download,
        "access_log_search": search,
        "note": "one 2-core machine runs the clients, the portal, the evidence service, PostgreSQL and Kafka",
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"idle CPU (no requests): {', '.join(f'{p} {ms} ms/s' for p, ms in idle.items())}")
    print_phase("auditors", auditors)
    print_phase("saturation", saturation)
    print_phase("gRPC GetArtifact (raw, evidence)", {"client_model": f"{CLIENTS} closed-loop gRPC clients",
                                                     **result["raw_get_artifact"]})
    print_phase("gRPC ledger Append (raw, evidence)", {"client_model": f"{CLIENTS} closed-loop gRPC clients",
                                                       **result["raw_ledger_append"]})
    if download:
        large_download.print_result(download)
    if search:
        access_log_search.print_result(search)
    print(f"\ngoal: catalog page p95 <= 50 ms with {auditors['client_model']}: {catalog.get('p95_ms')} ms "
          f"({'met' if result['goal']['met'] else 'not met'}); saturation {saturation['requests_per_second']} req/s; "
          f"wrote {OUT}")


if __name__ == "__main__":
    main()
