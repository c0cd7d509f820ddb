"""make bench-policy: the Policy Reasoner's latency overhead over raw OPA, throughput and memory, in one run.

(a) raw calls to the OPA sidecar's REST API (POST /v1/data/ig/ctx/decision, keep-alive HTTP/1.1, with the bearer
token OPA's locked API demands, as the service sends it: both sides pay OPA's system.authz check) and
(b) ig.policy.v1.PolicyService/Decide through the service (one HTTP/2 channel), both with the same input mix
(the golden scenarios protobuf can carry: allows, denies and step-ups across every dimension), the same 32
concurrent callers, against the same private OPA, sent by the same client: tools/loadgen (Go), standing in for
an API gateway (Envoy, a Go or Java gateway), so the comparison measures the service and not a Python client's
own event loop. The service runs as in production: its default 50 ms OPA budget, the decision log on
(PostgreSQL + outbox + Kafka relay). A third mode, the hop floor (hop_floor.py), is the service's gRPC server stack
answering a fixed decision at once: what the hop into a Python gRPC service costs here before any work, the part
of the overhead no change to the decision path can remove. Two phases, each alternating the modes in rounds so
that load from anything else on the machine falls on all alike:

- latency: the callers send on a fixed schedule (open loop, ``--rate`` decisions/s in all), as gateways forward
  their users' requests; latency counts from the scheduled send time, so a stall is charged to every request it
  delays (no coordinated omission, as in wrk2). Overhead p50/p95/p99 = (b) - (a) come from this phase.
- saturation: each caller sends its next request as soon as its answer arrives (closed loop); decisions/s.
  Latency there is only queueing (Little's law: 32 callers / throughput), so it is reported, never judged.

Before both, every input of the mix is asked once each way and the answers compared (result and rule id).
Writes JSON (the "decision coverage & latency" evidence).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp
import grpc
import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from envoy.service.auth.v3 import external_auth_pb2_grpc
from ext_authz_mix import CHECK, JWT_AUDIENCE, JWT_ISSUER, check_request, forward_auth_headers, rule_id_of
from ext_authz_mix import ROUTES as EXT_AUTHZ_ROUTES
from host_wakeup import percentile  # beside this script
from ig.policy.v1 import policy_pb2, policy_pb2_grpc
from ig_common.authz import AuthorizationInterceptor, AuthorizationTable
from ig_common.grpc_client import aio_channel_as, channel_as
from ig_common.spiffe import SpiffeId
from ig_common.tls import workload_directory
from ig_infra.components import Identities, Kafka, Postgres
from ig_infra.loadgen import LoadResult, drive, grpc_call, http_call, loadgen_binary
from ig_infra.paths import Paths
from ig_infra.process import child_pids, process_cpu_seconds
from ig_policy.domain.model import rfc3339
from ig_policy.testing import (
    GOLDEN_NOW,
    POLICIES,
    OpaServer,
    free_port,
    golden_cases,
    opa_binary,
    opa_server,
    policy_service,
    proto_from_input,
    set_test_clock,
    stop_process,
    write_approvers_file,
)
from prometheus_client.parser import text_string_to_metric_families
from wal_handover import handover_costs  # beside this script

RESULT_NAMES = {policy_pb2.RESULT_ALLOW: "ALLOW", policy_pb2.RESULT_DENY: "DENY", policy_pb2.RESULT_STEP_UP: "STEP_UP"}
DECIDE = "/ig.policy.v1.PolicyService/Decide"
FAIL_CLOSED = "ig.system.engine_unavailable"
HOP_FLOOR = Path(__file__).with_name("hop_floor.py")
# Decide is driven as a gateway would call it: mTLS with the gateway's workload certificate.
CLIENT_IDENTITY = "gateway"
HOST_WAKEUP = Path(__file__).with_name("host_wakeup.py")
ROUNDS = 4
WARMUP = 500
# The moment every decision is judged at: the service's test clock (IG_TEST_CLOCK_FILE), and raw OPA's input time.
BENCH_NOW = GOLDEN_NOW
Mode = Callable[[int, float], Awaitable[LoadResult]]


def workload() -> list[tuple[dict[str, Any], policy_pb2.DecideRequest]]:
    """Golden inputs the service accepts (valid protobuf, valid fields): the realistic mix, each dated at the
    service's test clock (BENCH_NOW). The service judges time with its own clock and residency on its own region
    (region-a here), so raw OPA gets the same moment and region and both sides answer the same question (a case
    dated on a Saturday is asked on Monday morning here)."""
    mix = []
    for case in golden_cases():
        document = copy.deepcopy(case.input)
        if isinstance(document.get("context"), dict):
            document["context"]["time"] = rfc3339(BENCH_NOW)
            document["context"]["region"] = "region-a"
        request = proto_from_input(document)
        if request is not None and case.expect["rule_id"] != "ig.input.invalid":
            mix.append((document, request))
    return mix


def summary(result: LoadResult) -> dict[str, float]:
    ordered = sorted(result.latencies_ms)

    def pct(p: float) -> float:
        return round(percentile(ordered, p), 3)

    return {"decisions": len(ordered), "p50_ms": pct(0.50), "p95_ms": pct(0.95), "p99_ms": pct(0.99),
            "mean_ms": round(statistics.fmean(ordered), 3), "max_ms": round(ordered[-1], 3),
            "decisions_per_s": round(len(ordered) / result.elapsed_s, 1)}


def merged(results: list[LoadResult]) -> LoadResult:
    outcomes: dict[str, int] = {}
    for result in results:
        for name, count in result.outcomes.items():
            outcomes[name] = outcomes.get(name, 0) + count
    return LoadResult(latencies_ms=[ms for r in results for ms in r.latencies_ms],
                      elapsed_s=sum(r.elapsed_s for r in results), outcomes=outcomes,
                      matched=sum(r.matched for r in results), cpu_s=sum(r.cpu_s for r in results))


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


def rego_coverage() -> float:
    out = subprocess.run([opa_binary(), "test", "--coverage", str(POLICIES)], capture_output=True, text=True,
                         check=True).stdout
    return float(json.loads(out)["coverage"])


async def answers_differing(opa: OpaServer, grpc_address: str, mix: list[tuple[dict[str, Any], Any]]) -> int:
    """Ask every input once each way (unloaded) and count the (result, rule id) pairs that differ."""
    differing = 0
    async with aiohttp.ClientSession(headers=opa.headers) as session, \
            aio_channel_as(CLIENT_IDENTITY, grpc_address) as channel:
        stub = policy_pb2_grpc.PolicyServiceStub(channel)
        for document, request in mix:
            async with session.post(f"{opa.url}/v1/data/ig/ctx/decision", json={"input": document}) as reply:
                raw = (await reply.json())["result"]
            decided = await stub.Decide(request, timeout=10)
            differing += (raw["result"], raw["rule_id"]) != (RESULT_NAMES[decided.result], decided.rule_id)
    return differing


async def check_answers_differing(opa: OpaServer, grpc_address: str, mix: list[tuple[dict[str, Any], Any]]) -> int:
    """As answers_differing, for Check: the rule id the gateway would see against raw OPA's."""
    differing = 0
    async with aiohttp.ClientSession(headers=opa.headers) as session, \
            aio_channel_as(CLIENT_IDENTITY, grpc_address) as channel:
        stub = external_auth_pb2_grpc.AuthorizationStub(channel)
        for document, check in mix:
            async with session.post(f"{opa.url}/v1/data/ig/ctx/decision", json={"input": document}) as reply:
                raw = (await reply.json())["result"]
            differing += raw["rule_id"] != rule_id_of(await stub.Check(check, timeout=10))
    return differing


async def forward_answers_differing(opa: OpaServer, url: str, mix: list[tuple[dict[str, Any], dict[str, str]]]
                                    ) -> int:
    """As answers_differing, for forward-auth: the X-IG-Rule-Id nginx would see against raw OPA's rule id."""
    gateway = workload_directory(CLIENT_IDENTITY)
    context = ssl.create_default_context(cafile=str(gateway / "ca.crt"))
    context.load_cert_chain(gateway / "tls.crt", gateway / "tls.key")
    differing = 0
    async with aiohttp.ClientSession(headers=opa.headers) as session, \
            httpx.AsyncClient(verify=context, timeout=10) as client:
        for document, headers in mix:
            async with session.post(f"{opa.url}/v1/data/ig/ctx/decision", json={"input": document}) as reply:
                raw = (await reply.json())["result"]
            differing += raw["rule_id"] != (await client.get(url, headers=headers)).headers.get("x-ig-rule-id")
    return differing


async def benchmark(opa: OpaServer, grpc_address: str, pid: int, floor: tuple[str, int] | None,
                    plain_floor: tuple[str, int] | None, decisions: int, concurrency: int, rate: float,
                    saturation_decisions: int, forward_auth: tuple[str, bytes]) -> dict[str, Any]:
    mix = workload()
    binary = loadgen_binary()
    raw_calls = [http_call(f"{opa.url}/v1/data/ig/ctx/decision", {"input": document}, headers=opa.headers)
                 for document, _ in mix]
    decide_calls = [grpc_call(DECIDE, request.SerializeToString()) for _, request in mix]
    check_mix = [(document, check) for document, _ in mix if (check := check_request(document)) is not None]
    check_calls = [grpc_call(CHECK, check.SerializeToString()) for _, check in check_mix]
    forward_url, jwt_key = forward_auth[0] + "/forward-auth", forward_auth[1]
    forward_mix = [(document, forward_auth_headers(document, jwt_key)) for document, _ in check_mix]
    forward_calls = [http_call(forward_url, method="GET", headers=headers) for _, headers in forward_mix]

    def mode(calls: list[dict[str, Any]], grpc_target: str = "", match: str = "", mtls: bool = True) -> Mode:
        async def run(count: int, at_rate: float) -> LoadResult:
            # warmup: each caller's connection (a TLS handshake for HTTPS keep-alive) is opened before the
            # measured calls, as a gateway's pooled connections are.
            return await drive(binary, calls, count=count, concurrency=concurrency, rate=at_rate,
                               grpc_target=grpc_target, match=match, warmup=concurrency,
                               tls_dir=workload_directory(CLIENT_IDENTITY) if mtls else None)
        return run

    modes = {"raw_opa_rest": mode(raw_calls)}
    if floor is not None and plain_floor is not None:
        modes["hop_floor_plaintext_grpc"] = mode(decide_calls, grpc_target=plain_floor[0], mtls=False)
        modes["hop_floor_grpc"] = mode(decide_calls, grpc_target=floor[0])
    modes["decide_grpc"] = mode(decide_calls, grpc_target=grpc_address, match=FAIL_CLOSED)
    modes["check_ext_authz"] = mode(check_calls, grpc_target=grpc_address, match=FAIL_CLOSED)
    # HTTPS with the gateway's client certificate (loadgen -tls-dir), as nginx's auth subrequest would call it.
    modes["forward_auth_https"] = mode(forward_calls, match=FAIL_CLOSED)
    differing = await answers_differing(opa, grpc_address, mix)
    check_differing = await check_answers_differing(opa, grpc_address, check_mix)
    forward_differing = await forward_answers_differing(opa, forward_url, forward_mix)
    for run in modes.values():
        await run(WARMUP, 0.0)
    # The service is two processes: the one that answers and its decision-log writer (ig_policy.log_writer).
    (writer_pid,) = child_pids(pid)
    sampler, writer_sampler = RssSampler(pid), RssSampler(writer_pid)
    sampling = [asyncio.create_task(sampler.run()), asyncio.create_task(writer_sampler.run())]

    per_round = decisions // ROUNDS
    rounds: dict[str, list[LoadResult]] = {name: [] for name in modes}
    for _ in range(ROUNDS):
        for name, run in modes.items():
            rounds[name].append(await run(per_round, rate))
    latency = {name: merged(results) for name, results in rounds.items()}
    latency_phase = {**{name: summary(result) for name, result in latency.items()},
                     "engine_unavailable": latency["decide_grpc"].matched,
                     "outcomes": {name: latency[name].outcomes for name in ("raw_opa_rest", "decide_grpc")}}

    per_round = saturation_decisions // ROUNDS
    rounds = {name: [] for name in modes}
    # CPU seconds of each process while each mode runs: OPA under raw and under Decide, the floor server, the service.
    watched = {"opa_raw": ("raw_opa_rest", opa.pid), "opa_decide": ("decide_grpc", opa.pid),
               "service": ("decide_grpc", pid), "service_log_writer": ("decide_grpc", writer_pid),
               "opa_check": ("check_ext_authz", opa.pid), "service_check": ("check_ext_authz", pid),
               "service_log_writer_check": ("check_ext_authz", writer_pid),
               "opa_forward_auth": ("forward_auth_https", opa.pid), "service_forward_auth": ("forward_auth_https", pid),
               "service_log_writer_forward_auth": ("forward_auth_https", writer_pid)}
    if floor is not None and plain_floor is not None:
        watched["hop_floor"] = ("hop_floor_grpc", floor[1])
        watched["hop_floor_plaintext"] = ("hop_floor_plaintext_grpc", plain_floor[1])
    cpu = dict.fromkeys(watched, 0.0)
    for _ in range(ROUNDS):
        for name, run in modes.items():
            before = {key: process_cpu_seconds(p) for key, (m, p) in watched.items() if m == name}
            rounds[name].append(await run(per_round, 0.0))
            for key, seconds in before.items():
                cpu[key] += process_cpu_seconds(watched[key][1]) - seconds
    saturated = {name: merged(results) for name, results in rounds.items()}
    cpu.update(client_raw=saturated["raw_opa_rest"].cpu_s, client_decide=saturated["decide_grpc"].cpu_s,
               client_check=saturated["check_ext_authz"].cpu_s,
               client_forward_auth=saturated["forward_auth_https"].cpu_s)
    saturation_phase = {
        **{name: summary(result) for name, result in saturated.items()},
        "engine_unavailable": saturated["decide_grpc"].matched,
        "outcomes": {name: saturated[name].outcomes for name in ("raw_opa_rest", "decide_grpc")},
        "cpu_ms_per_decision": {name: round(seconds * 1000 / (per_round * ROUNDS), 3)
                                for name, seconds in cpu.items()},
    }
    memory = {**sampler.stop(), "log_writer": writer_sampler.stop()}
    await asyncio.gather(*sampling)
    raw_summary, decide_summary = latency_phase["raw_opa_rest"], latency_phase["decide_grpc"]
    floor_figures: dict[str, Any] = {}
    if floor is not None:
        hop = latency_phase["hop_floor_grpc"]
        floor_figures["hop_floor"] = {
            "what": "hop_floor_grpc: the service's gRPC server stack (build_grpc_server on uvloop) answering a fixed "
                    "decision with the same initial metadata at once - no OPA, no log, no tracing "
                    "(services/policy/bench/hop_floor.py). Decide pays this hop and then a round trip to OPA much "
                    "like raw_opa_rest's.",
            "p50_ms": hop["p50_ms"], "p95_ms": hop["p95_ms"]}
        plain = latency_phase["hop_floor_plaintext_grpc"]
        per_call_cpu = saturation_phase["cpu_ms_per_decision"]
        floor_figures["security_cost"] = {
            "what": "the same hop floor with and without the suite's transport security: mTLS (the gateway's "
                    "workload certificate, the server's dynamic credentials) plus the authorization interceptor, "
                    "against a plaintext server with neither; the client is the same loadgen, with and without "
                    "-tls-dir. Connections are long-lived, so handshakes are not in these figures.",
            "p50_ms": round(hop["p50_ms"] - plain["p50_ms"], 3), "p95_ms": round(hop["p95_ms"] - plain["p95_ms"], 3),
            "server_cpu_ms_per_call": round(per_call_cpu["hop_floor"] - per_call_cpu["hop_floor_plaintext"], 3),
            "authorization_interceptor": await interceptor_cost_us()}
    return {
        "latency": {"client_model": f"open loop: {concurrency} callers sending on a fixed schedule, {rate:g} "
                                    "decisions/s in all; latency from the scheduled send time; tools/loadgen "
                                    "(Go) for every mode",
                    "offered_decisions_per_s": rate, **latency_phase},
        "saturation": {"client_model": f"closed loop: {concurrency} callers, each sends when answered",
                       **saturation_phase},
        "overhead_p50_ms": round(decide_summary["p50_ms"] - raw_summary["p50_ms"], 3),
        "overhead_p95_ms": round(decide_summary["p95_ms"] - raw_summary["p95_ms"], 3),
        "overhead_p99_ms": round(decide_summary["p99_ms"] - raw_summary["p99_ms"], 3),
        **floor_figures,
        "service_memory": memory,
        "answers_differing_from_raw_opa": differing,
        "check_ext_authz": {
            "what": "Envoy ext_authz v3 Check over the same channel and mTLS as Decide, the mix's inputs as HTTP "
                    "attributes (path + headers, the actor as the peer principal) through IG_GATEWAY_ROUTES "
                    "(bench/ext_authz_mix.py); break-glass inputs and tenants the gateway is not granted are left "
                    "out",
            "inputs": len(check_mix),
            "overhead_p50_ms": round(latency_phase["check_ext_authz"]["p50_ms"] - raw_summary["p50_ms"], 3),
            "overhead_p95_ms": round(latency_phase["check_ext_authz"]["p95_ms"] - raw_summary["p95_ms"], 3),
            "overhead_p99_ms": round(latency_phase["check_ext_authz"]["p99_ms"] - raw_summary["p99_ms"], 3),
            "answers_differing_from_raw_opa": check_differing,
        },
        "forward_auth_https": {
            "what": "GET /forward-auth over HTTPS with the gateway's client certificate (keep-alive HTTP/1.1), the "
                    "same inputs as Check described as nginx's auth subrequest describes a request, the actor as "
                    "the subject of a bearer JWT (ES256) the service verifies",
            "inputs": len(forward_mix),
            "overhead_p50_ms": round(latency_phase["forward_auth_https"]["p50_ms"] - raw_summary["p50_ms"], 3),
            "overhead_p95_ms": round(latency_phase["forward_auth_https"]["p95_ms"] - raw_summary["p95_ms"], 3),
            "overhead_p99_ms": round(latency_phase["forward_auth_https"]["p99_ms"] - raw_summary["p99_ms"], 3),
            "answers_differing_from_raw_opa": forward_differing,
        },
        "saturation_ratio_to_raw_opa": {
            name: round(saturation_phase[name]["decisions_per_s"]
                        / max(saturation_phase["raw_opa_rest"]["decisions_per_s"], 1e-9), 3)
            for name in ("decide_grpc", "check_ext_authz", "forward_auth_https")},
    }


def host_wakeup() -> dict[str, dict[str, float]]:
    """host_wakeup.py in its own process (it forks): the host's wake-up round trip, one CPU and across two."""
    out = subprocess.run([sys.executable, str(HOST_WAKEUP)], capture_output=True, text=True, check=True).stdout
    figures: dict[str, dict[str, float]] = json.loads(out)
    return figures


@contextmanager
def hop_floor_server(wanted: bool, *, plaintext: bool = False) -> Iterator[tuple[str, int] | None]:
    """services/policy/bench/hop_floor.py on a free port; yields its address and process id once it serves."""
    if not wanted:
        yield None
        return
    address = f"127.0.0.1:{free_port()}"
    process = subprocess.Popen([sys.executable, str(HOP_FLOOR), address.rpartition(":")[2],
                                *(["--plaintext"] if plaintext else [])])
    try:
        with (grpc.insecure_channel(address) if plaintext else channel_as(CLIENT_IDENTITY, address)) as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
        yield address, process.pid
    finally:
        stop_process(process)


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
    samples = {(s.name, s.labels.get("le", "")): s.value for family in text_string_to_metric_families(text)
               for s in family.samples if s.name.startswith("ig_policy_decision_log_wal_")}
    name = "ig_policy_decision_log_wal_sync_seconds"
    commits = samples.get((f"{name}_count", ""), 0.0)
    if not commits:
        return {"group_commits": 0}
    buckets = sorted((float(le), count) for (sample, le), count in samples.items() if sample == f"{name}_bucket")
    p95 = next(le for le, count in buckets if count >= 0.95 * commits)
    records = samples.get(("ig_policy_decision_log_wal_batch_records_sum", ""), 0.0)
    return {"group_commits": commits, "records_per_commit": round(records / commits, 1),
            "sync_mean_ms": round(samples[(f"{name}_sum", "")] / commits * 1000, 3), "sync_p95_ms_at_most": p95 * 1000}


def fresh_database(postgres: Postgres) -> str:
    """A database laid out like the suite's: the policy service runs there as its own roles."""
    name = f"ig_bench_policy_{uuid.uuid4().hex[:8]}"
    postgres.provision(name)
    return name


def main() -> None:
    parser = argparse.ArgumentParser(description="Policy Reasoner benchmark: raw OPA REST vs Decide")
    parser.add_argument("--decisions", type=int, default=10_000,
                        help="per mode in the latency phase (10,000 each: 20,000 decisions for the evidence)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rate", type=float, default=100.0,
                        help="decisions/s the callers offer together in the latency phase (open loop)")
    parser.add_argument("--saturation-decisions", type=int, default=8_000, help="per mode in the saturation phase")
    parser.add_argument("--hop-floor", action=argparse.BooleanOptionalAction, default=True,
                        help="also drive the hop floor (hop_floor.py): the service's gRPC stack answering at once")
    parser.add_argument("--wal-fsync", action=argparse.BooleanOptionalAction, default=True,
                        help="the service's IG_DECISION_LOG_WAL_FSYNC: answers wait for the WAL's fdatasync (default, "
                             "as shipped) or only for its write (--no-wal-fsync: what the sync costs)")
    parser.add_argument("--out", type=Path, default=Path("artifacts/bench/policy.json"))
    args = parser.parse_args()
    saturation_decisions = min(args.saturation_decisions, args.decisions)
    paths = Paths.from_environment()
    postgres, kafka, identities = Postgres(paths), Kafka(paths), Identities(paths)
    identities.start()
    # This process, the load generator and the hop floor find their certificates here.
    os.environ.update(identities.env())
    database = fresh_database(postgres)
    load_before, wakeup_before = os.getloadavg(), host_wakeup()
    try:
        with opa_server() as opa, tempfile.TemporaryDirectory() as scratch:
            env = {**identities.env(), **kafka.env(), **postgres.service_env("policy", database), **opa.env(),
                   "IG_LOG_LEVEL": "WARNING"}
            set_test_clock(Path(scratch) / "clock", BENCH_NOW)
            jwt_key = ec.generate_private_key(ec.SECP256R1())
            (Path(scratch) / "idp.pem").write_bytes(jwt_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
            # The mix's break-glass inputs carry grants the golden approver signs: the service verifies them.
            with policy_service(env, Path(scratch) / "policy.log", test_clock_file=str(Path(scratch) / "clock"),
                                breakglass_approvers_path=str(write_approvers_file(Path(scratch) / "approvers")),
                                gateway_routes=json.dumps(EXT_AUTHZ_ROUTES),
                                gateway_jwt_public_key_file=str(Path(scratch) / "idp.pem"),
                                gateway_jwt_issuer=JWT_ISSUER, gateway_jwt_audience=JWT_AUDIENCE,
                                decision_log_wal_fsync=str(args.wal_fsync).lower()) as service, \
                    hop_floor_server(args.hop_floor) as floor, \
                    hop_floor_server(args.hop_floor, plaintext=True) as plain_floor:
                figures = asyncio.run(benchmark(opa, service.grpc_address, service.process.pid, floor, plain_floor,
                                                args.decisions, args.concurrency, args.rate, saturation_decisions,
                                                (service.forward_auth_url, jwt_key.private_bytes(
                                                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))))
                figures["decision_log_wal"] = wal_commits(service.http_url)
        # The hand-over alone, in-process: the previous in-memory list against the WAL with and without fsync.
        figures["decision_log_handover"] = asyncio.run(handover_costs(decisions=3000))
    finally:
        postgres.admin_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)', transaction=False)
    saturated = figures["saturation"]["decide_grpc"]["decisions_per_s"]
    wakeup = {"before": wakeup_before, "after": host_wakeup()}
    report = {
        "benchmark": "policy", "command": "make bench-policy",
        "decisions_per_mode": args.decisions, "concurrent_callers": args.concurrency, "rounds": ROUNDS,
        "decision_log_wal_fsync": args.wal_fsync,
        **figures,
        "requirement": {"overhead_p95_ms_max": 5.0, "met": figures["overhead_p95_ms"] <= 5.0},
        "goal": {"overhead_p95_ms_max": 1.0, "decisions_per_s_min": 2000,
                 "met": figures["overhead_p95_ms"] <= 1.0 and saturated >= 2000},
        "decision_coverage": {"rego_line_coverage_pct": rego_coverage(), "golden_cases": len(golden_cases())},
        "machine": {"cpus": os.cpu_count(), "loadavg_before": [round(x, 2) for x in load_before],
                    "loadavg_after": [round(x, 2) for x in os.getloadavg()], "python": sys.version.split()[0],
                    "wakeup_round_trip_us": wakeup},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_report(report)
    print(f"  written to {args.out}")


LABELS = (("raw OPA REST ", "raw_opa_rest"), ("floor, plain ", "hop_floor_plaintext_grpc"),
          ("hop floor    ", "hop_floor_grpc"), ("Decide (gRPC)", "decide_grpc"),
          ("Check        ", "check_ext_authz"), ("forward-auth ", "forward_auth_https"))


def print_report(report: dict[str, Any]) -> None:
    latency, saturation = report["latency"], report["saturation"]
    print(f"policy bench: {report['decisions_per_mode']} decisions per mode, {report['concurrent_callers']} callers")
    print(f"  latency phase ({latency['client_model']}):")
    for label, key in LABELS:
        if key not in latency:
            continue
        row = latency[key]
        print(f"    {label}  p50 {row['p50_ms']:.2f} ms  p95 {row['p95_ms']:.2f} ms  p99 {row['p99_ms']:.2f} ms")
    print(f"    overhead p50 {report['overhead_p50_ms']:.2f} ms  p95 {report['overhead_p95_ms']:.2f} ms  p99 "
          f"{report['overhead_p99_ms']:.2f} ms (required p95 <= 5 ms: "
          f"{'met' if report['requirement']['met'] else 'NOT met'}; goal <= 1 ms), "
          f"engine_unavailable {latency['engine_unavailable']}")
    if "hop_floor" in report:
        print("    hop floor = the service's gRPC stack answering at once (no OPA, no log, no tracing): Decide pays "
              "it and then an OPA round trip; 'floor, plain' = the same without mTLS and authorization")
    if "security_cost" in report:
        cost = report["security_cost"]
        print(f"    mTLS + authorization cost per call: p50 {cost['p50_ms']:+.3f} ms, p95 {cost['p95_ms']:+.3f} ms, "
              f"server CPU {cost['server_cpu_ms_per_call']:+.3f} ms (saturation); the authorization interceptor "
              f"alone {cost['authorization_interceptor']['us_per_call']:.1f} us per call (goal <= 20 us)")
    check = report["check_ext_authz"]
    print(f"    Check overhead p50 {check['overhead_p50_ms']:.2f} ms  p95 {check['overhead_p95_ms']:.2f} ms  p99 "
          f"{check['overhead_p99_ms']:.2f} ms over {check['inputs']} inputs; answers differing from raw OPA "
          f"{check['answers_differing_from_raw_opa']}")
    forward = report["forward_auth_https"]
    print(f"    forward-auth overhead p50 {forward['overhead_p50_ms']:.2f} ms  "
          f"p95 {forward['overhead_p95_ms']:.2f} ms  p99 {forward['overhead_p99_ms']:.2f} ms; "
          f"answers differing from raw OPA {forward['answers_differing_from_raw_opa']}")
    print(f"  saturation phase ({saturation['client_model']}):")
    for label, key in LABELS:
        if key not in saturation:
            continue
        row = saturation[key]
        print(f"    {label}  {row['decisions_per_s']:.0f} decisions/s  (p50 {row['p50_ms']:.1f} ms: queueing)")
    print(f"    ratio to raw OPA {report['saturation_ratio_to_raw_opa']}")
    print(f"    goal >= 2,000 decisions/s; engine_unavailable {saturation['engine_unavailable']}; "
          f"CPU ms per decision {saturation['cpu_ms_per_decision']}")
    machine = report["machine"]
    memory = report["service_memory"]
    print(f"  service RSS peak {memory['rss_mb_peak']:.0f} MB + its decision-log writer "
          f"{memory['log_writer']['rss_mb_peak']:.0f} MB; answers differing from raw OPA "
          f"{report['answers_differing_from_raw_opa']}; load avg {machine['loadavg_before'][0]} -> "
          f"{machine['loadavg_after'][0]} on {machine['cpus']} CPUs")
    wal, handover = report["decision_log_wal"], report["decision_log_handover"]
    if wal.get("group_commits"):
        print(f"  decision-log WAL during the run: {wal['group_commits']:.0f} group commits of "
              f"{wal['records_per_commit']} decisions, write+fdatasync mean {wal['sync_mean_ms']:.2f} ms, "
              f"p95 <= {wal['sync_p95_ms_at_most']:g} ms (every answer waits for its commit; fsync "
              f"{'on' if report['decision_log_wal_fsync'] else 'off'})")
    print("  hand-over alone (in-process, closed loop, wait per decision p50 / p95 / p99):")
    for mode in ("memory", "wal_write", "wal_fsync"):
        row = handover[mode]
        print(f"    {mode:10} {row['decisions_per_s']:6d} decisions/s  {row['wait_p50_ms']:.3f} / "
              f"{row['wait_p95_ms']:.3f} / {row['wait_p99_ms']:.3f} ms")
    print(f"  host wake-up round trip (socket-pair ping-pong, p50 / p95, before -> after): "
          f"{wakeup_line(machine['wakeup_round_trip_us'])}")


def wakeup_line(wakeup: dict[str, dict[str, dict[str, float]]]) -> str:
    """``same cpu 58 / 131 us -> 60 / 140 us; cross cpu ...``"""
    placements = []
    for placement in wakeup["before"]:
        moments = [f"{moment[placement]['p50_us']:.0f} / {moment[placement]['p95_us']:.0f} us"
                   for moment in wakeup.values()]
        placements.append(f"{placement.replace('_', ' ')} " + " -> ".join(moments))
    return "; ".join(placements)


if __name__ == "__main__":
    main()
