"""make bench-burn: 1,000 SLOs per tick against a real Prometheus, and OFREP p95 under 100 concurrent clients.

Real parts only: a private Prometheus (ig-infra build) scraping the synthetic exporter with 1,000 series, the
shared PostgreSQL (a fresh database), and the burn service as a subprocess for the OFREP figures.
Writes $ARTIFACTS/bench/burn.json and prints the figures. No pass/fail: goals are printed beside the results.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
from ig_burn.config_loader import BurnConfig
from ig_burn.devtools.harness import BurnProcess, free_port, prometheus_config, synthetic_slo_yaml, throttle_policy_yaml
from ig_burn.devtools.synthetic_exporter import Workload, serve
from ig_burn.domain.burn import WindowScale
from ig_burn.domain.slo import parse_slo_documents
from ig_burn.domain.throttle import parse_policy_documents
from ig_burn.engine import BurnEngine
from ig_burn.prometheus import PrometheusClient
from ig_burn.store import MIGRATIONS, SCHEMA
from ig_common.db import prepare_schema
from ig_infra.components import Kafka, Postgres
from ig_infra.components.postgres import DB_USER, find_bin_dir
from ig_infra.components.prometheus import PrivatePrometheus
from ig_infra.paths import Paths

SLOS = int(os.environ.get("BENCH_SLOS", "1000"))
TICKS = int(os.environ.get("BENCH_TICKS", "3"))
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "100"))
REQUESTS_PER_CLIENT = int(os.environ.get("BENCH_REQUESTS_PER_CLIENT", "30"))
BATCH = int(os.environ.get("BENCH_BATCH", "250"))


def build_config() -> BurnConfig:
    slos, policies = [], []
    for i in range(SLOS):
        name = f"bench-{i:04d}"
        slos += parse_slo_documents(synthetic_slo_yaml(name, series=f"s{i:04d}", objective=0.999), "bench")
        policies += parse_policy_documents(throttle_policy_yaml(name).replace("subs.", f"bench{i:04d}.")
                                           .replace("connectors.", f"bench{i:04d}c.")
                                           .replace("experiments.paused", f"bench{i:04d}.experiments"), "bench")
    return BurnConfig(tuple(slos), tuple(policies))


def psql(postgres: Postgres, sql: str) -> None:
    bin_dir = find_bin_dir()
    assert bin_dir is not None
    subprocess.run([str(bin_dir / "psql"), "-h", postgres.host, "-p", str(postgres.port), "-U", DB_USER,
                    "-q", "-d", "postgres", "-c", sql], check=True, capture_output=True)


async def bench_ticks(prometheus_url: str, database_url: str) -> dict[str, object]:
    config = build_config()
    pool = await asyncpg.create_pool(database_url, min_size=2, max_size=10)
    assert pool is not None
    try:
        await prepare_schema(pool, SCHEMA, MIGRATIONS)
        client = PrometheusClient(prometheus_url, timeout=30, concurrency=4)
        engine = BurnEngine(config, client, pool, SCHEMA, scale=WindowScale(), batch_size=BATCH,
                            external_url="http://127.0.0.1")
        await engine.start()
        results = []
        try:
            for index in range(TICKS):
                results.append(await engine.tick())
                print(f"  tick {index + 1}: {results[-1].seconds:.3f}s, {results[-1].queries} queries, "
                      f"stale={results[-1].stale}", flush=True)
        finally:
            await engine.close()
            await client.close()
    finally:
        await pool.close()
    measured = [r for r in results if not r.stale]
    if not measured:
        raise SystemExit("every tick was stale: Prometheus did not answer")
    seconds = [r.seconds for r in measured]
    return {"slos": SLOS, "ticks": len(measured), "queries_per_tick": measured[0].queries,
            "terms_per_query": BATCH, "tick_seconds_median": statistics.median(seconds),
            "tick_seconds_max": max(seconds), "goal_tick_seconds": 2.0,
            "complete_reports": sum(r.complete for r in engine.snapshot.reports.values()),
            "transitions": sum(len(r.transitions) for r in measured),
            "history_note": "live Prometheus with seconds of history, production (30 d) windows"}


async def inner_eval_p50(url: str) -> float:
    """How long Prometheus itself spent evaluating a query (median), to separate its cost from ours."""
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"{url}/metrics")).text
    for line in text.splitlines():
        if line.startswith('prometheus_engine_query_duration_seconds{slice="inner_eval",quantile="0.5"}'):
            return float(line.split()[-1])
    return float("nan")


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a process: its own CPU, whatever else the machine is doing."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def bench_ofrep(url: str, pid: int) -> dict[str, object]:
    latencies: list[float] = []
    errors: list[int] = []
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as http:
        async def one_client() -> None:
            for _ in range(REQUESTS_PER_CLIENT):
                started = time.perf_counter()
                try:
                    response = await http.post("/ofrep/v1/evaluate/flags/bench0000.optimizedBuffer",
                                               json={"context": {"targetingKey": "u"}})
                except httpx.TransportError:  # e.g. a keep-alive connection the server closed: counted, not timed
                    errors.append(1)
                    continue
                latencies.append(time.perf_counter() - started)
                assert response.status_code == 200, response.text

        await http.post("/ofrep/v1/evaluate/flags/bench0000.optimizedBuffer", json={})
        cpu_before, load_before = process_cpu_seconds(pid), os.getloadavg()[0]
        started = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(CLIENTS)))
        wall = time.perf_counter() - started
        cpu = process_cpu_seconds(pid) - cpu_before
    ordered = sorted(latencies)
    return {"clients": CLIENTS, "requests": len(ordered), "transport_errors": len(errors),
            "throughput_rps": len(ordered) / wall,
            "p50_ms": ordered[len(ordered) // 2] * 1000, "p95_ms": ordered[int(len(ordered) * 0.95)] * 1000,
            "p99_ms": ordered[int(len(ordered) * 0.99)] * 1000, "goal_p95_ms": 5.0,
            "server_cpu_ms_per_request": cpu * 1000 / max(1, len(ordered)),
            "load_average_1m": max(load_before, os.getloadavg()[0])}


async def main() -> None:
    paths = Paths.from_environment()
    out = Path(os.environ.get("ARTIFACTS", "artifacts")) / "bench" / "burn.json"
    postgres, kafka = Postgres(paths), Kafka(paths)  # `make bench-burn` has run `ig-infra up postgres kafka`
    # Two fresh databases: the tick benchmark's 4,000 policy flags must not reach the shared Kafka through the
    # OFREP service's outbox relay.
    databases = [f"ig_bench_burn_{os.getpid()}_{uuid.uuid4().hex[:6]}" for _ in range(2)]
    for database in databases:
        psql(postgres, f"CREATE DATABASE {database}")
    database_url, ofrep_database_url = (postgres.dsn(d) for d in databases)
    # 0.015 % errors against a 99.9 % objective = 15 % of the budget: measured, between the thresholds, so the
    # figure is the steady-state tick (no transition storm).
    workload = Workload(series=SLOS, rps=50.0, error_ratio=0.00015)
    exporter = serve(workload, "127.0.0.1", free_port())
    workdir = Path(tempfile.mkdtemp(prefix="ig-bench-burn-"))
    prometheus = PrivatePrometheus(paths.cache, workdir / "prometheus", prometheus_config(
        {"synthetic": f"127.0.0.1:{exporter.server_address[1]}"}), free_port()).start()
    burn: BurnProcess | None = None
    try:
        await asyncio.sleep(8)  # a few scrapes, so every series has samples
        if os.environ.get("BENCH_ONLY") == "ofrep" and out.exists():
            ticks = json.loads(out.read_text())["tick"]
        else:
            ticks = await bench_ticks(prometheus.url, database_url)
            ticks["prometheus_inner_eval_p50_seconds"] = await inner_eval_p50(prometheus.url)
            ticks["load_average_1m"] = os.getloadavg()[0]
        print(f"burn tick: {ticks['slos']} SLOs, {ticks['queries_per_tick']} queries/tick, "
              f"median {ticks['tick_seconds_median']:.3f}s, max {ticks['tick_seconds_max']:.3f}s (goal <= 2 s); "
              f"Prometheus inner eval p50 {ticks['prometheus_inner_eval_p50_seconds']:.3f}s per query",
              flush=True)
        slo_dir = workdir / "slos"
        slo_dir.mkdir()
        (slo_dir / "one.yaml").write_text(synthetic_slo_yaml("bench-0000") + "---\n" + throttle_policy_yaml(
            "bench-0000").replace("subs.", "bench0000."))
        burn = BurnProcess({**kafka.env(), "IG_DATABASE_URL": ofrep_database_url, "IG_SLO_DIR": str(slo_dir),
                            "IG_PROMETHEUS_URL": prometheus.url, "IG_LOG_LEVEL": "WARNING",
                            "OTEL_TRACES_EXPORTER": "none"}, workdir / "burn.log").start(timeout=90)
        assert burn.process is not None
        ofrep = await bench_ofrep(burn.url, burn.process.pid)
        print(f"OFREP single-flag evaluation, {ofrep['clients']} concurrent clients, {ofrep['requests']} requests: "
              f"p50 {ofrep['p50_ms']:.2f} ms, p95 {ofrep['p95_ms']:.2f} ms, p99 {ofrep['p99_ms']:.2f} ms, "
              f"{ofrep['throughput_rps']:.0f} req/s (goal p95 <= 5 ms); server CPU "
              f"{ofrep['server_cpu_ms_per_request']:.2f} ms/request; load average {ofrep['load_average_1m']:.1f} "
              f"on {os.cpu_count()} CPUs", flush=True)
    finally:
        if burn is not None:
            burn.stop()
        prometheus.remove()
        exporter.shutdown()
        for database in databases:
            psql(postgres, f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "burn", "cpu_count": os.cpu_count(), "python": sys.version.split()[0],
                               "tick": ticks, "ofrep": ofrep}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    asyncio.run(main())
