"""make bench-policy: the Policy Reasoner's latency overhead over raw OPA, throughput and memory, in one run.

(a) raw calls to the OPA sidecar's REST API (POST /v1/data/ig/ctx/decision, keep-alive HTTP/1.1, with the bearer
token OPA's locked API demands, as the service sends it: both sides pay OPA's system.authz check) and
(b) ig.policy.v1.PolicyService/Decide through the service (``--conns`` HTTP/2 connections, 8 by default, as a
gateway's worker threads each open one), both with the same input mix
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
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from decision_agreement import (  # beside this script
    CLIENT_IDENTITY,
    answers_differing,
    check_answers_differing,
    forward_answers_differing,
)
from ext_authz_mix import CHECK, JWT_AUDIENCE, JWT_ISSUER, check_request, forward_auth_headers
from ext_authz_mix import ROUTES as EXT_AUTHZ_ROUTES
from figures import merged, print_report, summary  # beside this script
from ig.policy.v1 import policy_pb2
from ig_common.grpc_client import channel_as
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
    RunningService,
    free_port,
    golden_cases,
    opa_binary,
    opa_server,
    policy_service,
    proto_from_input,
    set_test_clock,
    stop_process,
    wasm_bundle,
    write_approvers_file,
)
from service_probes import (  # beside this script
    DECIDE,
    RssSampler,
    inprocess_counts,
    interceptor_cost_us,
    service_processes,
    wal_commits,
)
from wal_handover import handover_costs  # beside this script

FAIL_CLOSED = "ig.system.engine_unavailable"
HOP_FLOOR = Path(__file__).with_name("hop_floor.py")
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


def rego_coverage() -> float:
    out = subprocess.run([opa_binary(), "test", "--coverage", str(POLICIES)], capture_output=True, text=True,
                         check=True).stdout
    return float(json.loads(out)["coverage"])


async def benchmark(opa: OpaServer, grpc_address: str, pid: int, floor: tuple[str, int] | None,
                    plain_floor: tuple[str, int] | None, decisions: int, concurrency: int, rate: float,
                    saturation_decisions: int, forward_auth: tuple[str, bytes],
                    inprocess: RunningService | None, gateway_modes: bool, conns: int = 1) -> dict[str, Any]:
    mix = workload()
    binary = loadgen_binary()
    raw_calls = [http_call(f"{opa.url}/v1/data/ig/ctx/decision", {"input": document}, headers=opa.headers)
                 for document, _ in mix]
    decide_calls = [grpc_call(DECIDE, request.SerializeToString()) for _, request in mix]
    check_mix = [(document, check) for document, _ in mix if (check := check_request(document)) is not None]
    check_calls = [grpc_call(CHECK, check.SerializeToString()) for _, check in check_mix]
    # The gateway protocols are asked of the service as `make up` runs it: the in-process instance when it runs.
    gateway_grpc, gateway_forward_auth = ((inprocess.grpc_address, inprocess.forward_auth_url) if inprocess
                                          else (grpc_address, forward_auth[0]))
    forward_url, jwt_key = gateway_forward_auth + "/forward-auth", forward_auth[1]
    forward_mix = [(document, forward_auth_headers(document, jwt_key)) for document, _ in check_mix]
    forward_calls = [http_call(forward_url, method="GET", headers=headers) for _, headers in forward_mix]

    def mode(calls: list[dict[str, Any]], grpc_target: str = "", match: str = "", mtls: bool = True,
             connections: int = 1) -> Mode:
        async def run(count: int, at_rate: float) -> LoadResult:
            # warmup: each caller's connection (a TLS handshake for HTTPS keep-alive) is opened before the
            # measured calls, as a gateway's pooled connections are.
            return await drive(binary, calls, count=count, concurrency=concurrency, rate=at_rate,
                               grpc_target=grpc_target, match=match, warmup=max(concurrency, connections),
                               tls_dir=workload_directory(CLIENT_IDENTITY) if mtls else None, conns=connections)
        return run

    modes = {"raw_opa_rest": mode(raw_calls)}
    if floor is not None and plain_floor is not None:
        modes["hop_floor_plaintext_grpc"] = mode(decide_calls, grpc_target=plain_floor[0], mtls=False)
        modes["hop_floor_grpc"] = mode(decide_calls, grpc_target=floor[0])
    # The service's modes over `conns` connections, as a gateway's worker threads open them: with several worker
    # processes on the port (IG_POLICY_WORKERS) the kernel spreads connections, not calls.
    modes["decide_grpc"] = mode(decide_calls, grpc_target=grpc_address, match=FAIL_CLOSED, connections=conns)
    if inprocess is not None:
        modes["decide_inprocess_grpc"] = mode(decide_calls, grpc_target=inprocess.grpc_address, match=FAIL_CLOSED,
                                              connections=conns)
    if gateway_modes:
        modes["check_ext_authz"] = mode(check_calls, grpc_target=gateway_grpc, match=FAIL_CLOSED, connections=conns)
        # HTTPS with the gateway's client certificate (loadgen -tls-dir), as nginx's auth subrequest would call it.
        modes["forward_auth_https"] = mode(forward_calls, match=FAIL_CLOSED)
    differing = await answers_differing(opa, grpc_address, mix)
    inprocess_differing = await answers_differing(opa, inprocess.grpc_address, mix) if inprocess else None
    check_differing = await check_answers_differing(opa, gateway_grpc, check_mix) if gateway_modes else None
    forward_differing = await forward_answers_differing(opa, forward_url, forward_mix) if gateway_modes else None
    for run in modes.values():
        await run(WARMUP, 0.0)
    # The service is the process that answers and its decision-log writer (ig_policy.log_writer); with
    # IG_POLICY_WORKERS > 1, a supervisor, its workers and one writer per worker. CPU counts all of them; RSS is
    # sampled on one answering process and one writer (each worker is one such pair).
    service = service_processes(pid, child_pids)
    gateway = service_processes(inprocess.process.pid, child_pids) if inprocess is not None else service
    sampler, writer_sampler = RssSampler(service.answering[-1]), RssSampler(service.writers[0])
    sampling = [asyncio.create_task(sampler.run()), asyncio.create_task(writer_sampler.run())]

    per_round = decisions // ROUNDS
    rounds: dict[str, list[LoadResult]] = {name: [] for name in modes}
    for _ in range(ROUNDS):
        for name, run in modes.items():
            rounds[name].append(await run(per_round, rate))
    latency = {name: merged(results) for name, results in rounds.items()}
    latency_phase = {**{name: summary(result) for name, result in latency.items()},
                     "engine_unavailable": latency["decide_grpc"].matched,
                     "engine_unavailable_inprocess": latency["decide_inprocess_grpc"].matched if inprocess else None,
                     "outcomes": {name: latency[name].outcomes for name in ("raw_opa_rest", "decide_grpc")}}

    per_round = saturation_decisions // ROUNDS
    rounds = {name: [] for name in modes}
    # CPU seconds of each process while each mode runs: OPA under raw and under Decide, the floor server, the service.
    opa_pids = [opa.pid]
    watched = {"opa_raw": ("raw_opa_rest", opa_pids), "opa_decide": ("decide_grpc", opa_pids),
               "service": ("decide_grpc", service.answering), "service_log_writer": ("decide_grpc", service.writers)}
    if gateway_modes:
        watched.update({
            "opa_check": ("check_ext_authz", opa_pids), "service_check": ("check_ext_authz", gateway.answering),
            "service_log_writer_check": ("check_ext_authz", gateway.writers),
            "opa_forward_auth": ("forward_auth_https", opa_pids),
            "service_forward_auth": ("forward_auth_https", gateway.answering),
            "service_log_writer_forward_auth": ("forward_auth_https", gateway.writers)})
    if inprocess is not None:
        watched.update({"opa_decide_inprocess": ("decide_inprocess_grpc", opa_pids),
                        "service_inprocess": ("decide_inprocess_grpc", gateway.answering),
                        "service_log_writer_inprocess": ("decide_inprocess_grpc", gateway.writers)})
    if floor is not None and plain_floor is not None:
        watched["hop_floor"] = ("hop_floor_grpc", [floor[1]])
        watched["hop_floor_plaintext"] = ("hop_floor_plaintext_grpc", [plain_floor[1]])

    def cpu_seconds(pids: list[int]) -> float:
        return sum(process_cpu_seconds(p) for p in pids)

    cpu = dict.fromkeys(watched, 0.0)
    for _ in range(ROUNDS):
        for name, run in modes.items():
            before = {key: cpu_seconds(p) for key, (m, p) in watched.items() if m == name}
            rounds[name].append(await run(per_round, 0.0))
            for key, seconds in before.items():
                cpu[key] += cpu_seconds(watched[key][1]) - seconds
    saturated = {name: merged(results) for name, results in rounds.items()}
    cpu.update({f"client_{name}": result.cpu_s for name, result in saturated.items()})
    saturation_phase = {
        **{name: summary(result) for name, result in saturated.items()},
        "engine_unavailable": saturated["decide_grpc"].matched,
        "engine_unavailable_inprocess": saturated["decide_inprocess_grpc"].matched if inprocess else None,
        "outcomes": {name: saturated[name].outcomes for name in ("raw_opa_rest", "decide_grpc")},
        "cpu_ms_per_decision": {name: round(seconds * 1000 / (per_round * ROUNDS), 3)
                                for name, seconds in cpu.items()},
    }
    # The same figures per mode: every process that works while that mode runs, the load generator included.
    saturation_phase["cpu_ms_per_decision_by_mode"] = {
        name: {**{key: saturation_phase["cpu_ms_per_decision"][key] for key, (m, _) in watched.items() if m == name},
               "client": saturation_phase["cpu_ms_per_decision"][f"client_{name}"]}
        for name in saturated}
    memory = {**sampler.stop(), "log_writer": writer_sampler.stop(),
              "answering_processes": len(service.answering), "log_writers": len(service.writers)}
    await asyncio.gather(*sampling)
    # The service as `make up` runs it is judged: in-process when that instance runs, else the sidecar-only one.
    judged = "decide_inprocess_grpc" if inprocess is not None else "decide_grpc"
    raw_summary, decide_summary = latency_phase["raw_opa_rest"], latency_phase[judged]
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
    def overheads(name: str) -> dict[str, float]:
        return {f"overhead_{p}_ms": round(latency_phase[name][f"{p}_ms"] - raw_summary[f"{p}_ms"], 3)
                for p in ("p50", "p95", "p99")}

    gateway_figures: dict[str, Any] = {}
    if gateway_modes:
        gateway_figures["check_ext_authz"] = {
            "what": "Envoy ext_authz v3 Check (of the in-process instance when it runs) over the same channel and "
                    "mTLS as Decide, the mix's inputs as HTTP "
                    "attributes (path + headers, the actor as the peer principal) through IG_GATEWAY_ROUTES "
                    "(bench/ext_authz_mix.py); break-glass inputs and tenants the gateway is not granted are left "
                    "out",
            "inputs": len(check_mix), **overheads("check_ext_authz"),
            "answers_differing_from_raw_opa": check_differing}
        gateway_figures["forward_auth_https"] = {
            "what": "GET /forward-auth (of the in-process instance when it runs) over HTTPS with the gateway's "
                    "client certificate (keep-alive HTTP/1.1), the "
                    "same inputs as Check described as nginx's auth subrequest describes a request, the actor as "
                    "the subject of a bearer JWT (ES256) the service verifies",
            "inputs": len(forward_mix), **overheads("forward_auth_https"),
            "answers_differing_from_raw_opa": forward_differing}
    inprocess_figures: dict[str, Any] = {}
    if inprocess is not None:
        inprocess_figures["decide_inprocess"] = {
            "what": "Decide through a second instance of the service, the same settings plus IG_POLICY_WASM_BUNDLE: "
                    "the policy compiled to Wasm (ig-policy wasm-build) evaluated in the service's process, the "
                    "OPA sidecar asked only when the module cannot answer (ig_policy.engine.inprocess)",
            **overheads("decide_inprocess_grpc"), "answers_differing_from_raw_opa": inprocess_differing,
            **inprocess_counts(inprocess.http_url)}
    return {
        "grpc_connections": conns,
        "latency": {"client_model": f"open loop: {concurrency} callers sending on a fixed schedule, {rate:g} "
                                    "decisions/s in all; latency from the scheduled send time; tools/loadgen "
                                    "(Go) for every mode",
                    "offered_decisions_per_s": rate, **latency_phase},
        "saturation": {"client_model": f"closed loop: {concurrency} callers, each sends when answered",
                       **saturation_phase},
        "judged_mode": judged,
        "overhead_p50_ms": round(decide_summary["p50_ms"] - raw_summary["p50_ms"], 3),
        "overhead_p95_ms": round(decide_summary["p95_ms"] - raw_summary["p95_ms"], 3),
        "overhead_p99_ms": round(decide_summary["p99_ms"] - raw_summary["p99_ms"], 3),
        "decide_sidecar_only": {
            "what": "Decide through an instance without IG_POLICY_WASM_BUNDLE: every decision an OPA round trip",
            **overheads("decide_grpc"), "answers_differing_from_raw_opa": differing},
        **floor_figures,
        "service_memory": memory,
        "answers_differing_from_raw_opa": differing,
        **gateway_figures,
        **inprocess_figures,
        "saturation_ratio_to_raw_opa": {
            name: round(saturation_phase[name]["decisions_per_s"]
                        / max(saturation_phase["raw_opa_rest"]["decisions_per_s"], 1e-9), 3)
            for name in ("decide_grpc", "decide_inprocess_grpc", "check_ext_authz", "forward_auth_https")
            if name in saturation_phase},
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


@contextmanager
def inprocess_service(wanted: bool, env: dict[str, str], scratch: Path, settings: dict[str, str]
                      ) -> Iterator[RunningService | None]:
    """A second instance of the service with the policy compiled to Wasm (IG_POLICY_WASM_BUNDLE), beside the first,
    against the same OPA and database."""
    if not wanted:
        yield None
        return
    bundle = wasm_bundle(scratch / "policy-wasm.tar.gz")
    with policy_service(env, scratch / "policy-inprocess.log", policy_wasm_bundle=str(bundle),
                        **settings) as service:
        yield service


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
    parser.add_argument("--inprocess", action=argparse.BooleanOptionalAction, default=True,
                        help="also drive Decide through a second instance evaluating the policy in-process (Wasm)")
    parser.add_argument("--gateway-modes", action=argparse.BooleanOptionalAction, default=True,
                        help="also drive Check (ext_authz) and forward-auth")
    parser.add_argument("--workers", type=int, default=None,
                        help="the service instances' IG_POLICY_WORKERS (default: the service's own default)")
    parser.add_argument("--conns", type=int, default=8,
                        help="gRPC connections the load generator spreads Decide and Check over (a gateway's worker "
                             "threads each open one; with several service workers the kernel spreads connections)")
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
            settings = {"test_clock_file": str(Path(scratch) / "clock"), "gateway_routes": json.dumps(EXT_AUTHZ_ROUTES),
                        "breakglass_approvers_path": str(write_approvers_file(Path(scratch) / "approvers")),
                        "gateway_jwt_public_key_file": str(Path(scratch) / "idp.pem"),
                        "gateway_jwt_issuer": JWT_ISSUER, "gateway_jwt_audience": JWT_AUDIENCE,
                        "decision_log_wal_fsync": str(args.wal_fsync).lower()}
            if args.workers is not None:
                settings["policy_workers"] = str(args.workers)
            with policy_service(env, Path(scratch) / "policy.log", **settings) as service, \
                    inprocess_service(args.inprocess, env, Path(scratch), settings) as inprocess, \
                    hop_floor_server(args.hop_floor) as floor, \
                    hop_floor_server(args.hop_floor, plaintext=True) as plain_floor:
                figures = asyncio.run(benchmark(opa, service.grpc_address, service.process.pid, floor, plain_floor,
                                                args.decisions, args.concurrency, args.rate, saturation_decisions,
                                                (service.forward_auth_url, jwt_key.private_bytes(
                                                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption())), inprocess, args.gateway_modes,
                                                args.conns))
                figures["decision_log_wal"] = wal_commits(service.http_url)
        # The hand-over alone, in-process: the previous in-memory list against the WAL with and without fsync.
        figures["decision_log_handover"] = asyncio.run(handover_costs(decisions=3000))
    finally:
        postgres.admin_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)', transaction=False)
    judged = figures["judged_mode"]
    saturated = figures["saturation"][judged]["decisions_per_s"]
    ratio = figures["saturation_ratio_to_raw_opa"][judged]
    wakeup = {"before": wakeup_before, "after": host_wakeup()}
    report = {
        "benchmark": "policy", "command": "make bench-policy",
        "decisions_per_mode": args.decisions, "concurrent_callers": args.concurrency, "rounds": ROUNDS,
        "decision_log_wal_fsync": args.wal_fsync,
        "policy_workers": args.workers if args.workers is not None else "service default",
        **figures,
        "requirement": {"overhead_p95_ms_max": 5.0, "met": figures["overhead_p95_ms"] <= 5.0},
        "goal": {"overhead_p95_ms_max": 1.0, "decisions_per_s_min": 2000, "saturation_ratio_to_raw_opa_min": 0.8,
                 "met": figures["overhead_p95_ms"] <= 1.0 and saturated >= 2000 and ratio >= 0.8},
        "decision_coverage": {"rego_line_coverage_pct": rego_coverage(), "golden_cases": len(golden_cases())},
        "machine": {"cpus": os.cpu_count(), "loadavg_before": [round(x, 2) for x in load_before],
                    "loadavg_after": [round(x, 2) for x in os.getloadavg()], "python": sys.version.split()[0],
                    "wakeup_round_trip_us": wakeup},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_report(report)
    print(f"  written to {args.out}")



if __name__ == "__main__":
    main()
