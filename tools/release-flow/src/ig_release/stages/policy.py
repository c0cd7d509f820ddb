"""Policy stage: a gateway-like client sends a realistic allow/deny/step-up mix through the Policy Reasoner,
the decision log is checked in PostgreSQL, and coverage (`opa test --coverage`) + latency (the policy benchmark)
are recorded as release evidence."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from ig_infra.process import free_port

from ig_release.context import ReleaseContext, StageFailed
from ig_release.process import run_logged
from ig_release.settings import REPO

MAX_FAIL_CLOSED_SHARE = 0.05
CONCURRENT_CLIENTS = 4
# The policy service judges time with its own clock (a sent X-Request-Time is only checked against it), so the mix
# asks for beta, open around the clock: the same answers at any hour of the release.
TENANT = "beta"
ANALYST = {"X-User": "u-bob", "X-Roles": "analyst", "X-Purposes": "investigation", "X-Purpose": "investigation",
           "X-Network-Zone": "corp", "X-Device-Trust": "high", "X-Session-Risk": "10", "X-Auth-Level": "pwd"}
# (share of traffic, expected HTTP status, headers on top of ANALYST): what a gateway sees on an ordinary day.
MIX: list[tuple[str, float, int, dict[str, str]]] = [
    ("allow: analyst reads a case for an investigation", 0.6, 200, {}),
    ("deny: cross-tenant read", 0.15, 403, {"X-User-Tenant": "alpha"}),
    ("deny: purpose not granted", 0.1, 403, {"X-Purpose": "marketing"}),
    ("step-up: session risk in the step-up band", 0.15, 401, {"X-Session-Risk": "50"}),
]



@contextmanager
def reference_gateway(policy_grpc: str, log: Path) -> Iterator[str]:
    """tools/gateway/policy_gateway.py in front of the policy service: HTTP in, gRPC Decide, headers out."""
    port = free_port()
    with log.open("ab") as out:
        process = subprocess.Popen([sys.executable, str(REPO / "tools" / "gateway" / "policy_gateway.py"),
                                    "--listen", f"127.0.0.1:{port}", "--policy", policy_grpc],
                                   stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{url}/docs", timeout=1)
                break
            except httpx.TransportError as error:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise StageFailed("the reference gateway did not start", log) from error
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


async def send_mix(url: str, requests: int, seed: int = 121) -> list[dict[str, Any]]:
    chooser = random.Random(seed)
    weights = [share for _, share, _, _ in MIX]
    plan = [MIX[chooser.choices(range(len(MIX)), weights)[0]] for _ in range(requests)]
    limit = asyncio.Semaphore(CONCURRENT_CLIENTS)

    async def one(client: httpx.AsyncClient, index: int, scenario: tuple[str, float, int, dict[str, str]]) -> dict[
            str, Any]:
        name, _, expected, extra = scenario
        async with limit:
            started = time.perf_counter()
            sent_at = {"X-Request-Time": datetime.now(UTC).isoformat()}  # the client's clock, forwarded
            reply = await client.get(f"{url}/{TENANT}/case/case-{index % 50}", headers={**ANALYST, **sent_at, **extra})
            return {"scenario": name, "expected": expected, "status": reply.status_code,
                    "decision_id": reply.headers.get("X-IG-Decision-Id", ""),
                    "rule_id": reply.headers.get("X-IG-Rule-Id", ""), "ms": (time.perf_counter() - started) * 1000}

    async with httpx.AsyncClient(timeout=30) as client:
        return list(await asyncio.gather(*(one(client, i, s) for i, s in enumerate(plan))))


async def logged_decisions(database_url: str, ids: list[str], within: float = 30) -> int:
    """How many of the decisions are in the decision log (writes are batched, so wait for them)."""
    conn = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + within
        while True:
            found = int(await conn.fetchval("SELECT count(*) FROM policy.decision_log WHERE decision_id = ANY($1)",
                                            ids))
            if found == len(ids) or time.monotonic() > deadline:
                return found
            await asyncio.sleep(0.5)
    finally:
        await conn.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


def gateway_traffic(ctx: ReleaseContext, out: Path) -> dict[str, Any]:
    log = ctx.logs / "policy-gateway.log"
    with reference_gateway(ctx.endpoints.policy_grpc, log) as url:
        results = asyncio.run(send_mix(url, ctx.profile.gateway_requests))
    # OPA too slow for the per-call timeout -> DENY ig.system.engine_unavailable: fail closed, as designed. A few
    # under load are reported; more than MAX_FAIL_CLOSED_SHARE means the suite is not healthy enough to release.
    fail_closed = [r for r in results if r["rule_id"] == "ig.system.engine_unavailable"]
    if len(fail_closed) > MAX_FAIL_CLOSED_SHARE * len(results):
        raise StageFailed(f"{len(fail_closed)} of {len(results)} decisions failed closed (OPA unavailable or slower "
                          f"than the policy service's timeout)", log)
    wrong = [r for r in results if r not in fail_closed and
             (r["status"] != r["expected"] or not r["decision_id"].startswith("dec_"))]
    if wrong:
        raise StageFailed(f"{len(wrong)} of {len(results)} gateway requests got an unexpected answer, e.g. {wrong[0]}",
                          log)
    ids = [r["decision_id"] for r in results]
    logged = asyncio.run(logged_decisions(ctx.endpoints.database_url, ids))
    if logged != len(ids):
        raise StageFailed(f"decision log holds {logged} of {len(ids)} decisions made (policy.decision_log)", log)
    latencies = [r["ms"] for r in results]
    report = {"kind": "gateway traffic through Policy Reasoner v2", "requests": len(results),
              "by_scenario": dict(Counter(r["scenario"] for r in results)),
              "by_status": {str(k): v for k, v in sorted(Counter(r["status"] for r in results).items())},
              "by_rule": dict(Counter(r["rule_id"] for r in results)),
              "decision_log_rows": logged, "failed_closed": len(fail_closed),
              "latency_ms": {"p50": percentile(latencies, 0.5), "p95": percentile(latencies, 0.95),
                             "p99": percentile(latencies, 0.99)},
              "sample_decision_ids": ids[:5]}
    path = out / "gateway-traffic.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    ctx.add_evidence("load-report", path)
    return report


def coverage_and_latency(ctx: ReleaseContext, out: Path) -> tuple[float, dict[str, Any]]:
    from ig_infra.components.opa import opa_binary
    from ig_infra.paths import Paths

    log = ctx.logs / "policy-evidence.log"
    coverage_file = out / "policy-rego-coverage.json"
    done = run_logged([str(opa_binary(Paths.from_environment().cache)), "test", "--coverage", "--threshold", "90",
                       "policies/rego"], log, what="opa test --coverage (threshold 90 %)", timeout=300)
    coverage_file.write_text(done.stdout)
    coverage = float(json.loads(done.stdout)["coverage"])
    bench_file = out / "policy-latency.json"
    # The evidence is raw OPA vs Decide as the suite runs it. The hop floor and the gateway paths (Check,
    # forward-auth) are for whoever tunes the service (make bench-policy has them; their answers are tested on every
    # run); leaving the gateway modes out took the stage's benchmark from 74 s to 48 s (ci profile, 2026-12-06).
    run_logged([sys.executable, "services/policy/bench/bench_policy.py", "--decisions",
                str(ctx.profile.bench_decisions), "--concurrency", str(ctx.profile.bench_concurrency),
                "--no-hop-floor", "--no-gateway-modes", "--out", str(bench_file)], log, what="policy benchmark",
               timeout=900)
    bench = json.loads(bench_file.read_text())
    ctx.add_evidence("decision-coverage", coverage_file)
    ctx.add_evidence("decision-coverage", bench_file)
    return coverage, bench


def run(ctx: ReleaseContext) -> str:
    out = ctx.stage_dir("policy")
    traffic = gateway_traffic(ctx, out)
    coverage, bench = coverage_and_latency(ctx, out)
    verdict = "met" if bench["requirement"]["met"] else "NOT MET (requirement: <= 5 ms)"
    if not bench["requirement"]["met"] and ctx.profile.enforce_policy_latency:
        raise StageFailed(f"policy overhead p95 {bench['overhead_p95_ms']} ms exceeds 5 ms",
                          ctx.logs / "policy-evidence.log")
    statuses = traffic["by_status"]
    return (f"{traffic['requests']} requests (200: {statuses.get('200', 0)}, 403: {statuses.get('403', 0)}, "
            f"401 step-up: {statuses.get('401', 0)}), all in the decision log; rego coverage {coverage:.1f} %; "
            f"overhead p95 {bench['overhead_p95_ms']} ms over {bench['decisions_per_mode']} decisions ({verdict}; "
            f"{_p95s(bench)})")


def _p95s(bench: dict[str, Any]) -> str:
    """Both figures the overhead is the difference of: a negative overhead (raw OPA's own tail the slower, on a
    busy machine) reads as what it is."""
    latency = bench["latency"]
    return (f"Decide p95 {latency[bench['judged_mode']]['p95_ms']} ms, raw OPA p95 "
            f"{latency['raw_opa_rest']['p95_ms']} ms, same run")
