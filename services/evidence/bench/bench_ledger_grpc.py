"""Ledger appends through the real gRPC service (mTLS, authorization, the service's own database roles), driven by
the Go load generator (tools/loadgen) so that the figure measures the service, not a Python client.

Three loads, closed loop, in one run: 8 writers sending Append; 200 writers sending Append; 200 writers sending
AppendBatch of BATCH entries. The named baseline, in the same run against the same process: 8 writers sending
grpc.health.v1 Check, which passes the same TLS, interceptors and authorization and does nothing else, so it is the
most unary calls per second this server could answer. Each load also reports the service's CPU per entry (per
call for the baseline), which contention on the shared machine disturbs far less than a rate. Returns the figures
(bench_evidence.py prints and writes them).

IG_BENCH_GRPC_LOADS (comma-separated, default all: health_8, append_8, append_200, batch_200) runs only the loads
named; IG_BENCH_PROFILE_DIR=DIR records the service with py-spy during each load (collapsed stacks,
DIR/<load>.txt; the sampler costs the service some CPU, so a profiled run's figures are not the benchmark's).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from grpc_health.v1 import health_pb2
from ig.ledger.v1 import ledger_pb2
from ig_evidence.testing import evidence_service
from ig_infra.components import Postgres
from ig_infra.components.identities import Identities
from ig_infra.components.kafka import Kafka
from ig_infra.loadgen import drive, grpc_call, loadgen_binary
from ig_infra.paths import Paths
from ig_infra.services import tenant_residency_env

BATCH = int(os.environ.get("IG_BENCH_APPEND_BATCH", 50))
SINGLE_CALLS = int(os.environ.get("IG_BENCH_APPEND_CALLS", 20_000))
BATCH_CALLS = int(os.environ.get("IG_BENCH_APPEND_BATCH_CALLS", 1_200))
APPEND = "/ig.ledger.v1.LedgerService/Append"
APPEND_BATCH = "/ig.ledger.v1.LedgerService/AppendBatch"
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
ALL_LOADS = ("health_8", "append_8", "append_200", "batch_200")
LOADS = [name.strip() for name in os.environ.get("IG_BENCH_GRPC_LOADS", ",".join(ALL_LOADS)).split(",")
         if name.strip()]
PROFILE_DIR = os.environ.get("IG_BENCH_PROFILE_DIR", "")


def _append(n: int) -> ledger_pb2.AppendRequest:
    # "bench" is the tenant the table grants the bench identity (policies/authz/grpc-methods.yaml); pinned nowhere
    return ledger_pb2.AppendRequest(kind="bench.append", subject=f"s{n % 64}", payload=b'{"n":%d}' % n,
                                    tenant="bench")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _database_cpu_seconds(database: str) -> float:
    """CPU of the PostgreSQL backends serving ``database`` (their process titles name it), summed: the share of
    PostgreSQL's work a load costs, which the rate of a busy shared machine hides. Backends that come and go
    within a load, and the server's own processes (WAL writer, checkpointer), are not counted."""
    total = 0.0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            title = (proc / "cmdline").read_bytes().decode(errors="replace")
            if title.startswith("postgres: ") and f" {database} " in title:
                total += _cpu_seconds(int(proc.name))
        except OSError:
            continue  # gone meanwhile
    return total


@contextlib.contextmanager
def _profiled(pid: int, name: str) -> Iterator[None]:
    """py-spy sampling the service for the block, when IG_BENCH_PROFILE_DIR asks for it."""
    if not PROFILE_DIR:
        yield
        return
    spy = shutil.which("py-spy") or str(Path.home() / ".local" / "bin" / "py-spy")
    Path(PROFILE_DIR).mkdir(parents=True, exist_ok=True)
    recorder = subprocess.Popen([spy, "record", "--pid", str(pid), "--rate", "250", "--nonblocking", "--format",
                                 "raw", "-o", str(Path(PROFILE_DIR) / f"{name}.txt")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        recorder.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        recorder.wait(timeout=60)


async def _load(target: str, tls: Path, calls: list[dict[str, Any]], count: int, concurrency: int,
                entries_per_call: int, pid: int, name: str, database: str) -> dict[str, Any]:
    cpu_before, database_before = _cpu_seconds(pid), _database_cpu_seconds(database)
    warmup = min(200, count // 10)
    with _profiled(pid, name):
        result = await drive(loadgen_binary(), calls, count=count, concurrency=concurrency, grpc_target=target,
                             tls_dir=tls, warmup=warmup)
    cpu = _cpu_seconds(pid) - cpu_before  # spent on the warm-up calls too, so they count below
    database_cpu = _database_cpu_seconds(database) - database_before
    ok = result.outcomes.get("grpc:OK", 0)
    latencies = sorted(result.latencies_ms)
    return {"calls": result.calls, "outcomes": result.outcomes, "entries_per_s": round(ok * entries_per_call /
                                                                                        result.elapsed_s),
            "call_p50_ms": round(latencies[len(latencies) // 2], 2),
            "call_p99_ms": round(latencies[int(len(latencies) * 0.99)], 2), "loadgen_cpu_s": round(result.cpu_s, 1),
            "service_cpu_ms_per_entry": round(cpu * 1000 / ((result.calls + warmup) * entries_per_call), 3),
            "postgres_cpu_ms_per_entry": round(database_cpu * 1000 / ((result.calls + warmup) * entries_per_call),
                                               3)}


def bench_appends_through_grpc() -> dict[str, Any]:
    paths = Paths.from_environment()
    postgres, identities = Postgres(paths), Identities(paths)
    name = f"ig_bench_ledger_grpc_{os.getpid()}"
    postgres.provision(name)
    # The residency pins are required (the service holds tenants' data); the bench's tenant is pinned nowhere.
    env = {**identities.env(), **Kafka(paths).env(), **postgres.service_env("evidence", name),
           **tenant_residency_env(paths), "IG_LOG_LEVEL": "WARNING",
           # the writer's batching, to compare settings in one run (the service's default when unset)
           **{k: v for k, v in os.environ.items() if k == "IG_LEDGER_APPEND_LINGER_MS"}}
    tls = identities.issued("bench").directory
    try:
        with tempfile.TemporaryDirectory(prefix="ig-bench-ledger-") as blobs, \
                evidence_service(env, postgres.dsn(name), Path(blobs)) as service:
            singles = [grpc_call(APPEND, _append(n).SerializeToString()) for n in range(256)]
            batches = [grpc_call(APPEND_BATCH, ledger_pb2.AppendBatchRequest(
                entries=[_append(b * BATCH + i) for i in range(BATCH)]).SerializeToString()) for b in range(16)]
            health = [grpc_call(HEALTH_CHECK, health_pb2.HealthCheckRequest().SerializeToString())]
            pid, target = service.pid, service.grpc_target
            loads = {  # name -> (figure, calls, how many, writers, entries per call)
                "health_8": ("baseline_health_check_8_writers", health, SINGLE_CALLS, 8, 1),
                "append_8": ("append_8_writers", singles, SINGLE_CALLS, 8, 1),
                "append_200": ("append_200_writers", singles, SINGLE_CALLS, 200, 1),
                "batch_200": (f"append_batch_{BATCH}_200_writers", batches, BATCH_CALLS, 200, BATCH),
            }
            unknown = set(LOADS) - set(loads)
            if unknown:
                raise SystemExit(f"IG_BENCH_GRPC_LOADS: {sorted(unknown)}: name loads of {', '.join(loads)}")
            figures: dict[str, Any] = {}
            for load in LOADS:
                figure, calls, count, writers, per_call = loads[load]
                figures[figure] = asyncio.run(_load(target, tls, calls, count, writers, per_call, pid, load, name))
            figures["client"] = "tools/loadgen (Go), closed loop, mTLS as the bench identity, on the same 2 cores"
            return figures
    finally:
        postgres.admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', transaction=False)
