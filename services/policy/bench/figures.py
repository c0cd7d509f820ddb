"""The benchmark's figures: load results summarised into percentiles, and the report printed from its JSON."""

from __future__ import annotations

import statistics
from typing import Any

from host_wakeup import percentile  # beside this script
from ig_infra.loadgen import LoadResult


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


LABELS = (("raw OPA REST ", "raw_opa_rest"), ("floor, plain ", "hop_floor_plaintext_grpc"),
          ("hop floor    ", "hop_floor_grpc"), ("Decide, OPA  ", "decide_grpc"),
          ("Decide, Wasm ", "decide_inprocess_grpc"),
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
    sidecar = report["decide_sidecar_only"]
    print(f"    Decide over the sidecar only: overhead p50 {sidecar['overhead_p50_ms']:.2f} ms  p95 "
          f"{sidecar['overhead_p95_ms']:.2f} ms  p99 {sidecar['overhead_p99_ms']:.2f} ms")
    print(f"    judged ({report['judged_mode']}): overhead p50 {report['overhead_p50_ms']:.2f} ms  "
          f"p95 {report['overhead_p95_ms']:.2f} ms  p99 "
          f"{report['overhead_p99_ms']:.2f} ms (required p95 <= 5 ms: "
          f"{'met' if report['requirement']['met'] else 'NOT met'}; goal <= 1 ms), engine_unavailable "
          f"{latency['engine_unavailable']} (in-process {latency['engine_unavailable_inprocess']})")
    if "hop_floor" in report:
        print("    hop floor = the service's gRPC stack answering at once (no OPA, no log, no tracing): Decide pays "
              "it and then an OPA round trip; 'floor, plain' = the same without mTLS and authorization")
    if "security_cost" in report:
        cost = report["security_cost"]
        print(f"    mTLS + authorization cost per call: p50 {cost['p50_ms']:+.3f} ms, p95 {cost['p95_ms']:+.3f} ms, "
              f"server CPU {cost['server_cpu_ms_per_call']:+.3f} ms (saturation); the authorization interceptor "
              f"alone {cost['authorization_interceptor']['us_per_call']:.1f} us per call (goal <= 20 us)")
    if "decide_inprocess" in report:
        wasm = report["decide_inprocess"]
        print(f"    Decide, Wasm in-process: overhead p50 {wasm['overhead_p50_ms']:.2f} ms  "
              f"p95 {wasm['overhead_p95_ms']:.2f} ms  p99 {wasm['overhead_p99_ms']:.2f} ms (goal p95 <= 1 ms); "
              f"answered in-process {wasm['answered_in_process']:.0f}, left to the sidecar "
              f"{wasm['left_to_the_sidecar']:.0f}; answers differing from raw OPA "
              f"{wasm['answers_differing_from_raw_opa']}")
    if "check_ext_authz" in report:
        check = report["check_ext_authz"]
        print(f"    Check overhead p50 {check['overhead_p50_ms']:.2f} ms  p95 {check['overhead_p95_ms']:.2f} ms  "
              f"p99 {check['overhead_p99_ms']:.2f} ms over {check['inputs']} inputs; answers differing from raw "
              f"OPA {check['answers_differing_from_raw_opa']}")
        forward = report["forward_auth_https"]
        print(f"    forward-auth overhead p50 {forward['overhead_p50_ms']:.2f} ms  "
              f"p95 {forward['overhead_p95_ms']:.2f} ms  p99 {forward['overhead_p99_ms']:.2f} ms; "
              f"answers differing from raw OPA {forward['answers_differing_from_raw_opa']}")
    print(f"  saturation phase ({saturation['client_model']}; service workers {report['policy_workers']}, "
          f"Decide and Check over {report['grpc_connections']} gRPC connections):")
    for label, key in LABELS:
        if key not in saturation:
            continue
        row = saturation[key]
        ratio = report["saturation_ratio_to_raw_opa"].get(key)
        cpu = ", ".join(f"{process} {ms:.2f}" for process, ms in
                        saturation["cpu_ms_per_decision_by_mode"].get(key, {}).items())
        print(f"    {label}  {row['decisions_per_s']:.0f} decisions/s"
              f"{f' ({ratio:.2f} of raw OPA)' if ratio is not None else ''}  (p50 {row['p50_ms']:.1f} ms: "
              f"queueing)  CPU ms per decision: {cpu}")
    print(f"    goal ({report['judged_mode']}): p95 overhead <= 1 ms, >= 2,000 decisions/s and >= 0.8 of raw OPA: "
          f"{'met' if report['goal']['met'] else 'NOT met'}; engine_unavailable "
          f"{saturation['engine_unavailable']} (in-process {saturation['engine_unavailable_inprocess']})")
    machine = report["machine"]
    memory = report["service_memory"]
    print(f"  service RSS peak {memory['rss_mb_peak']:.0f} MB + its decision-log writer "
          f"{memory['log_writer']['rss_mb_peak']:.0f} MB (per process: {memory['answering_processes']} answering, "
          f"{memory['log_writers']} writers); answers differing from raw OPA (sidecar only) "
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
