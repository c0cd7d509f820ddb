"""make bench-burn: 1,000 SLOs per tick against a real Prometheus, and OFREP latency under 100 concurrent clients.

Real parts only: a private Prometheus (ig-infra build) scraping the synthetic exporter with 1,000 series and
evaluating the recording rules ``python -m ig_burn.recording_rules`` generates for the 1,000 SLOs, the shared
PostgreSQL (fresh databases), and the burn service as a subprocess for the OFREP figures (load: ofrep_load.py).
Writes $ARTIFACTS/bench/burn.json and prints the figures. No pass/fail: goals are printed beside the results.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
import yaml
from ig_burn.config_loader import BurnConfig
from ig_burn.devtools.harness import BurnProcess, free_port, prometheus_config, synthetic_slo_yaml, throttle_policy_yaml
from ig_burn.devtools.synthetic_exporter import Workload, serve
from ig_burn.domain.burn import WindowScale
from ig_burn.domain.recording import INFO_METRIC, rule_file
from ig_burn.domain.slo import parse_duration, parse_slo_documents
from ig_burn.domain.throttle import parse_policy_documents
from ig_burn.engine import BurnEngine
from ig_burn.prometheus import PrometheusClient
from ig_burn.store import MIGRATIONS, SCHEMA
from ig_common.db import prepare_schema
from ig_infra.components import Kafka, Postgres
from ig_infra.components.identities import Identities
from ig_infra.components.prometheus import PrivatePrometheus
from ig_infra.paths import Paths
from ig_infra.process import process_cpu_seconds
from ofrep_load import closed_loop, open_loop

SLOS = int(os.environ.get("BENCH_SLOS", "1000"))
TICKS = int(os.environ.get("BENCH_TICKS", "5"))
DIRECT_TICKS = int(os.environ.get("BENCH_DIRECT_TICKS", "2"))  # the same SLOs without recording rules
BATCH = int(os.environ.get("BENCH_BATCH", "250"))
RULE_INTERVAL = os.environ.get("BENCH_RULE_INTERVAL", "30s")
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "100"))
# The first rate is the stated client model the goal is measured with; the others show how latency grows with load.
RATES_PER_CLIENT = [float(r) for r in os.environ.get("BENCH_RATES_PER_CLIENT", "5,10").split(",")]
RATE_PER_CLIENT = RATES_PER_CLIENT[0]
OPEN_SECONDS = float(os.environ.get("BENCH_OPEN_LOOP_SECONDS", "15"))
CLOSED_REQUESTS_PER_CLIENT = int(os.environ.get("BENCH_CLOSED_REQUESTS_PER_CLIENT", "300"))
OFREP_PATH = "/ofrep/v1/evaluate/flags/bench0000.optimizedBuffer"
CLIENT_MODEL = (f"open loop: {CLIENTS} OpenFeature SDK clients, each evaluating one flag at Poisson-distributed "
                f"moments, {RATE_PER_CLIENT:g}/s per client ({CLIENTS * RATE_PER_CLIENT:g}/s in all), one request "
                "at a time on a keep-alive connection; latency from the moment a request was due; sent by "
                "tools/loadgen (Go)")


def build_config() -> BurnConfig:
    slos, policies = [], []
    for i in range(SLOS):
        name = f"bench-{i:04d}"
        slos += parse_slo_documents(synthetic_slo_yaml(name, series=f"s{i:04d}", objective=0.999), "bench")
        policies += parse_policy_documents(throttle_policy_yaml(name).replace("subs.", f"bench{i:04d}.")
                                           .replace("connectors.", f"bench{i:04d}c.")
                                           .replace("experiments.paused", f"bench{i:04d}.experiments"), "bench")
    return BurnConfig(tuple(slos), tuple(policies))


async def wait_for_rules(url: str, count: int, patience: float) -> float:
    """Until Prometheus has evaluated every SLO's rule group once; returns how long that took."""
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        while time.monotonic() - started < patience:
            body = (await http.get("/api/v1/query", params={"query": f"count({INFO_METRIC})"})).json()
            result = body["data"]["result"]
            if result and int(float(result[0]["value"][1])) >= count:
                return time.monotonic() - started
            await asyncio.sleep(1)
    raise SystemExit(f"Prometheus did not evaluate the {count} SLO rule groups within {patience:.0f}s")


async def cpu_over(pid: int, seconds: float) -> float:
    """A process' own CPU over ``seconds`` of doing only its background work (Prometheus: scrapes, rules)."""
    before = process_cpu_seconds(pid)
    await asyncio.sleep(seconds)
    return process_cpu_seconds(pid) - before


def delete_rule_files(rules_dir: Path) -> None:
    for path in rules_dir.glob("*.yml"):
        path.unlink()


async def reload_config(url: str) -> None:
    async with httpx.AsyncClient() as http:
        (await http.post(f"{url}/-/reload", timeout=60)).raise_for_status()


async def run_ticks(engine: BurnEngine, count: int, label: str, prometheus_pid: int) -> dict[str, object]:
    await engine.start()
    results, cpu, prometheus_cpu = [], [], []
    try:
        for index in range(count):
            before, prometheus_before = time.process_time(), process_cpu_seconds(prometheus_pid)
            results.append(await engine.tick())
            cpu.append(time.process_time() - before)
            prometheus_cpu.append(process_cpu_seconds(prometheus_pid) - prometheus_before)
            print(f"  {label} tick {index + 1}: {results[-1].seconds:.3f}s (CPU: burn {cpu[-1]:.3f}s, Prometheus "
                  f"{prometheus_cpu[-1]:.2f}s), {results[-1].queries} queries, {results[-1].recorded_slos} SLOs "
                  f"from rules, stale={results[-1].stale}", flush=True)
    finally:
        await engine.close()
    measured = [i for i, r in enumerate(results) if not r.stale]
    if not measured:
        raise SystemExit(f"every {label} tick was stale: Prometheus did not answer")
    last = results[measured[-1]]
    return {"ticks": len(measured), "queries_per_tick": last.queries, "slos_from_recording_rules": last.recorded_slos,
            "tick_seconds_median": statistics.median(results[i].seconds for i in measured),
            "tick_seconds_max": max(results[i].seconds for i in measured),
            "burn_cpu_seconds_per_tick_median": statistics.median(cpu[i] for i in measured),
            "prometheus_cpu_seconds_per_tick_median": statistics.median(prometheus_cpu[i] for i in measured),
            "complete_reports": sum(r.complete for r in engine.snapshot.reports.values()),
            "transitions": sum(len(results[i].transitions) for i in measured)}


async def bench_ticks(prometheus: PrivatePrometheus, rules_dir: Path, database_url: str,
                      config: BurnConfig) -> dict[str, object]:
    pid = int(prometheus.pid_file.read_text())
    waited = await wait_for_rules(prometheus.url, SLOS, patience=300)
    print(f"  Prometheus evaluated all {SLOS} SLO rule groups after {waited:.0f}s", flush=True)
    interval = parse_duration(RULE_INTERVAL)
    rules_cpu = await cpu_over(pid, interval)
    print(f"  Prometheus CPU over {RULE_INTERVAL} of scraping + recording rules: {rules_cpu:.2f}s", flush=True)
    pool = await asyncpg.create_pool(database_url, min_size=2, max_size=10)
    assert pool is not None
    client = PrometheusClient(prometheus.url, timeout=60, concurrency=4)
    try:
        await prepare_schema(pool, SCHEMA, MIGRATIONS)

        def engine(max_age: float | None) -> BurnEngine:
            return BurnEngine(config, client, pool, SCHEMA, scale=WindowScale(), batch_size=BATCH,
                              external_url="http://127.0.0.1", recording_rules_max_age=max_age)

        recorded = await run_ticks(engine(90.0), TICKS, "with rules", pid)
        direct = None
        if DIRECT_TICKS:
            # Unload the rules, so the direct ticks' Prometheus CPU is theirs alone.
            delete_rule_files(rules_dir)
            await reload_config(prometheus.url)
            scrape_cpu = await cpu_over(pid, interval)
            direct = await run_ticks(engine(None), DIRECT_TICKS, "without rules", pid)
            direct[f"prometheus_cpu_seconds_per_{RULE_INTERVAL}_scraping_only"] = scrape_cpu
    finally:
        await client.close()
        await pool.close()
    return {"slos": SLOS, **recorded, "goal_tick_seconds": 2.0, "rule_interval": RULE_INTERVAL,
            "prometheus_cpu_seconds_per_rule_interval": rules_cpu,
            "without_recording_rules": direct, "terms_per_direct_query": BATCH,
            "history_note": "live Prometheus with seconds of history, production (30 d) windows",
            "load_average_1m": os.getloadavg()[0]}


async def bench_ofrep(url: str, pid: int) -> dict[str, object]:
    target = url + OFREP_PATH
    idle = await cpu_over(pid, 10.0) / 10.0
    runs = [await open_loop(target, pid, clients=CLIENTS, rate_per_client=rate, seconds=OPEN_SECONDS)
            for rate in RATES_PER_CLIENT]
    closed = await closed_loop(target, pid, clients=CLIENTS, requests_per_client=CLOSED_REQUESTS_PER_CLIENT)
    return {"client_model": CLIENT_MODEL, "clients": CLIENTS, "rate_per_client": RATE_PER_CLIENT,
            "goal_p95_ms": 5.0, "server_idle_cpu_ms_per_second": idle * 1000, "open_loop": runs[0].summary(idle),
            "open_loop_by_rate_per_client": {f"{rate:g}": run.summary(idle)
                                             for rate, run in zip(RATES_PER_CLIENT, runs, strict=True)},
            "closed_loop_saturation": {"model": f"closed loop: {CLIENTS} clients, each sends its next request when "
                                                "the last answer arrives", **closed.summary(idle)},
            "load_average_1m": os.getloadavg()[0]}


def print_figures(ticks: dict[str, object], ofrep: dict[str, object]) -> None:
    direct = ticks["without_recording_rules"]
    print(f"burn tick: {ticks['slos']} SLOs, {ticks['queries_per_tick']} query/tick reading the recording rules: "
          f"median {ticks['tick_seconds_median']:.3f}s, max {ticks['tick_seconds_max']:.3f}s (goal <= 2 s), burn "
          f"CPU {ticks['burn_cpu_seconds_per_tick_median']:.3f}s/tick; Prometheus CPU "
          f"{ticks['prometheus_cpu_seconds_per_rule_interval']:.2f}s per {ticks['rule_interval']} for scraping and "
          f"the rules", flush=True)
    if isinstance(direct, dict):
        print(f"  without recording rules: {direct['queries_per_tick']} queries/tick, median "
              f"{direct['tick_seconds_median']:.3f}s, CPU per tick: burn "
              f"{direct['burn_cpu_seconds_per_tick_median']:.3f}s, Prometheus "
              f"{direct['prometheus_cpu_seconds_per_tick_median']:.2f}s", flush=True)
    opened, closed = ofrep["open_loop"], ofrep["closed_loop_saturation"]
    assert isinstance(opened, dict) and isinstance(closed, dict)
    print(f"OFREP single-flag evaluation, {ofrep['client_model']}: {opened['requests']} requests, "
          f"p50 {opened['p50_ms']:.2f} ms, p95 {opened['p95_ms']:.2f} ms, p99 {opened['p99_ms']:.2f} ms "
          f"(goal p95 <= 5 ms; from send: p95 {opened['service_p95_ms']:.2f} ms), {opened['throughput_rps']:.0f} "
          f"req/s, server CPU {opened['server_cpu_ms_per_request']:.3f} ms/request "
          f"({opened['server_cpu_ms_per_request_net']:.3f} without its idle background)", flush=True)
    by_rate = ofrep["open_loop_by_rate_per_client"]
    assert isinstance(by_rate, dict)
    for rate, run in list(by_rate.items())[1:]:
        print(f"  open loop at {rate}/s per client ({run['requests']} requests): p50 {run['p50_ms']:.2f} ms, p95 "
              f"{run['p95_ms']:.2f} ms, p99 {run['p99_ms']:.2f} ms, server CPU "
              f"{run['server_cpu_ms_per_request']:.3f} ms/request", flush=True)
    print(f"  closed-loop saturation, {CLIENTS} clients: {closed['throughput_rps']:.0f} req/s, p50 "
          f"{closed['p50_ms']:.2f} ms, p95 {closed['p95_ms']:.2f} ms, server CPU "
          f"{closed['server_cpu_ms_per_request']:.3f} ms/request ({closed['server_cpu_ms_per_request_net']:.3f} net); "
          f"load average {ofrep['load_average_1m']:.1f} on "
          f"{os.cpu_count()} CPUs", flush=True)


async def main() -> None:
    paths = Paths.from_environment()
    out = Path(os.environ.get("ARTIFACTS", "artifacts")) / "bench" / "burn.json"
    postgres, kafka = Postgres(paths), Kafka(paths)  # `make bench-burn` has run `ig-infra up postgres kafka`
    identities = Identities(paths)
    identities.start()
    os.environ.update(identities.env())  # the OFREP service finds its certificate and the table there
    # Two fresh databases: the tick benchmark's 4,000 policy flags must not reach the shared Kafka through the
    # OFREP service's outbox relay.
    databases = [f"ig_bench_burn_{os.getpid()}_{uuid.uuid4().hex[:6]}" for _ in range(2)]
    for database in databases:
        postgres.provision(database)  # laid out like the suite's: the OFREP service runs as the burn roles
    database_url = postgres.dsn(databases[0])  # the tick benchmark's in-process engine (no service)
    config = build_config()
    # 0.015 % errors against a 99.9 % objective = 15 % of the budget: measured, between the thresholds, so the
    # figure is the steady-state tick (no transition storm).
    workload = Workload(series=SLOS, rps=50.0, error_ratio=0.00015)
    exporter = serve(workload, "127.0.0.1", free_port())
    workdir = Path(tempfile.mkdtemp(prefix="ig-bench-burn-"))
    rules_dir = workdir / "rules"
    rules_dir.mkdir()
    (rules_dir / "burn-slos.yml").write_text(yaml.safe_dump(rule_file(config.slos, WindowScale(), RULE_INTERVAL),
                                                            width=1_000_000))
    prometheus = PrivatePrometheus(paths.cache, workdir / "prometheus", prometheus_config(
        {"synthetic": f"127.0.0.1:{exporter.server_address[1]}"}, rules_dir=rules_dir), free_port()).start()
    burn: BurnProcess | None = None
    try:
        if os.environ.get("BENCH_ONLY") == "ofrep" and out.exists():
            ticks = json.loads(out.read_text())["tick"]
        else:
            ticks = await bench_ticks(prometheus, rules_dir, database_url, config)
        # Prometheus (and its rules) must not compete with the OFREP figures for the CPU: the OFREP service only
        # needs it for its own ticks, which then find it unreachable and mark their one SLO stale.
        prometheus.remove()
        slo_dir = workdir / "slos"
        slo_dir.mkdir()
        (slo_dir / "one.yaml").write_text(synthetic_slo_yaml("bench-0000") + "---\n" + throttle_policy_yaml(
            "bench-0000").replace("subs.", "bench0000."))
        burn = BurnProcess({**kafka.env(), **postgres.service_env("burn", databases[1]), "IG_SLO_DIR": str(slo_dir),
                            "IG_PROMETHEUS_URL": prometheus.url, "IG_LOG_LEVEL": "WARNING",
                            "OTEL_TRACES_EXPORTER": "none"}, workdir / "burn.log").start(timeout=90)
        assert burn.process is not None
        ofrep = await bench_ofrep(burn.url, burn.process.pid)
        print_figures(ticks, ofrep)
    finally:
        if burn is not None:
            burn.stop()
        prometheus.remove()
        exporter.shutdown()
        for database in databases:
            postgres.admin_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)', transaction=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "burn", "cpu_count": os.cpu_count(), "python": sys.version.split()[0],
                               "tick": ticks, "ofrep": ofrep}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    asyncio.run(main())
