"""What the benchmark reads from the processes it drives: RSS, the in-process module's answer counts, the WAL's
group commits (from the service's /metrics) and the authorization interceptor's own cost per call."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from pathlib import Path
from typing import Any, NamedTuple

import grpc
import httpx
from ig_common.authz import AuthorizationInterceptor, AuthorizationTable
from ig_common.spiffe import SpiffeId
from prometheus_client.parser import text_string_to_metric_families

DECIDE = "/ig.policy.v1.PolicyService/Decide"


class ServiceProcesses(NamedTuple):
    """The processes of one policy service: those that answer (one, or the supervisor and its workers) and the
    decision-log writers (one per answering process)."""

    answering: list[int]
    writers: list[int]


def service_processes(pid: int, children: Any) -> ServiceProcesses:
    """``pid``'s tree: a single process has its writer as its child; a supervisor has workers, each a writer."""
    kids = list(children(pid))
    grandchildren = [g for kid in kids for g in children(kid)]
    if grandchildren:
        return ServiceProcesses([pid, *kids], grandchildren)
    return ServiceProcesses([pid], kids)


class RssSampler:
    def __init__(self, pid: int) -> None:
        self.pid, self.samples, self._stop = pid, [], asyncio.Event()

    def _read(self, key: str) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) / 1024
        return 0.0

    async def run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self._read("VmRSS:"))
            await asyncio.sleep(0.1)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        return {"rss_mb_peak": round(max(self.samples, default=0), 1),
                "rss_mb_mean": round(statistics.fmean(self.samples) if self.samples else 0, 1),
                "rss_mb_high_water": round(self._read("VmHWM:"), 1)}


def inprocess_counts(http_url: str) -> dict[str, float]:
    """The in-process instance's own count of what its module answered and what it left to the sidecar."""
    text = httpx.get(f"{http_url}/metrics", timeout=10, follow_redirects=True).text
    counts = {"answered_in_process": 0.0, "left_to_the_sidecar": 0.0}
    for line in text.splitlines():
        # Unlabelled from one process; with a worker label from each of several (IG_POLICY_WORKERS).
        if line.startswith(("ig_policy_inprocess_answers_total ", "ig_policy_inprocess_answers_total{")):
            counts["answered_in_process"] += float(line.split()[-1])
        elif line.startswith("ig_policy_inprocess_fallbacks_total{"):
            counts["left_to_the_sidecar"] += float(line.split()[-1])
    return counts


class CallDetails(NamedTuple):
    """What grpc hands an interceptor about a call (grpc.HandlerCallDetails is only a protocol)."""

    method: str
    invocation_metadata: tuple[tuple[str, str], ...]


async def interceptor_cost_us(calls: int = 20_000, rounds: int = 5) -> dict[str, float]:
    """The authorization interceptor's own work per call, in-process: the handler it wraps (through its public
    intercept_service) against the bare handler, on a context that answers auth_context() and the metadata from
    memory as grpc's does. Excludes building auth_context() itself, which grpc does per call in C either way."""
    table = AuthorizationTable.load(Path(os.environ["IG_AUTHZ_TABLE"]))
    interceptor = AuthorizationInterceptor(table, SpiffeId("maestro.local", "ig", "policy"))
    peer = b"spiffe://maestro.local/ns/ig/sa/gateway"

    class Context:
        def auth_context(self) -> dict[str, list[bytes]]:
            return {"transport_security_type": [b"ssl"], "peer_spiffe_id": [peer], "x509_common_name": [b"gateway"],
                    "x509_subject_alternative_name": [peer, b"localhost", b"127.0.0.1"]}

        def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
            return (("user-agent", "grpc-go/1.77.0"), ("content-type", "application/grpc"))

    async def bare(request: Any, context: Any) -> None:
        return None

    async def per_call() -> tuple[float, float]:
        details = CallDetails(DECIDE, ())

        async def continuation(_: Any) -> Any:
            return grpc.unary_unary_rpc_method_handler(bare)

        guarded = (await interceptor.intercept_service(continuation, details)).unary_unary
        context = Context()
        timings = {"bare": [], "guarded": []}
        for _ in range(rounds):
            for name, behaviour in (("bare", bare), ("guarded", guarded)):
                started = time.perf_counter()
                for _ in range(calls):
                    await behaviour(None, context)
                timings[name].append((time.perf_counter() - started) / calls * 1e6)
        return statistics.median(timings["bare"]), statistics.median(timings["guarded"])

    bare_us, guarded_us = await per_call()
    return {"us_per_call": round(guarded_us - bare_us, 2), "calls_per_round": calls, "rounds": rounds}


def wal_commits(http_url: str) -> dict[str, float]:
    """The service's WAL group commits over the whole run, from its /metrics: how many, their mean size, and the
    mean and bucketed p95 of a commit's write + fdatasync (what every answer waited for on top of deciding)."""
    text = httpx.get(f"{http_url}/metrics", timeout=10, follow_redirects=True).text
    # Summed over the worker label when the service runs several workers (IG_POLICY_WORKERS).
    samples: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith("ig_policy_decision_log_wal_"):
                key = (s.name, s.labels.get("le", ""))
                samples[key] = samples.get(key, 0.0) + s.value
    name = "ig_policy_decision_log_wal_sync_seconds"
    commits = samples.get((f"{name}_count", ""), 0.0)
    if not commits:
        return {"group_commits": 0}
    buckets = sorted((float(le), count) for (sample, le), count in samples.items() if sample == f"{name}_bucket")
    p95 = next(le for le, count in buckets if count >= 0.95 * commits)
    records = samples.get(("ig_policy_decision_log_wal_batch_records_sum", ""), 0.0)
    return {"group_commits": commits, "records_per_commit": round(records / commits, 1),
            "sync_mean_ms": round(samples[(f"{name}_sum", "")] / commits * 1000, 3), "sync_p95_ms_at_most": p95 * 1000}
