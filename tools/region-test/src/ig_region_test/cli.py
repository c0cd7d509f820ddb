"""region-test: prove region-b can take over from region-a within RPO/RTO, and that pinned data stays home.

    region-test --simulate-failover --assert-rpo 300 --assert-rto 1800 [--failback] [--replication sync|async]
    region-test --cleanup          remove namespaces/processes a killed run left behind

The figures go to <artifacts>/multi-region/multi-region-metrics.prom and, when --pushgateway or IG_PUSHGATEWAY_URL
names one, to a Prometheus Pushgateway (job "region-test"; `uv run ig-infra env` prints the local one's URL).

Exit status: 0 every assertion held; 1 an assertion failed (or RTO exceeded the time limit); 2 usage error;
3 the regions could not be built; 128+N interrupted by signal N (after cleaning up).
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import os
import secrets
import signal
import sys
import time
from pathlib import Path
from typing import Any

import structlog
from ig_common.logging import configure_logging
from ig_infra.components.identities import Identities
from ig_infra.paths import REPO_ROOT, Paths

from ig_region_test import network, proofs, regions, report
from ig_region_test.measure import ThresholdError, judge, parse_seconds
from ig_region_test.policyprobe import RESIDENCY_RULE, pinned_tenants_from_policy, policy_revision
from ig_region_test.residency import PinnedTenant
from ig_region_test.runstate import Busy, Interrupted, RunState, install_signal_handlers
from ig_region_test.scenario import Options, PhaseResult, heal_and_rebuild, run_phase
from ig_region_test.timeline import Timeline
from ig_region_test.workload import PinnedTenantWriter

FALLBACK_TENANTS = {"alpha": "region-a", "gamma": "region-b"}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="region-test", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--simulate-failover", action="store_true", help="run the measured failover of region-a")
    p.add_argument("--cleanup", action="store_true", help="only remove what an earlier (killed) run left")
    p.add_argument("--assert-rpo", metavar="SECONDS", help="largest acceptable RPO in seconds (required)")
    p.add_argument("--assert-rto", metavar="SECONDS", help="largest acceptable RTO in seconds (required)")
    p.add_argument("--failback", action="store_true", help="then rebuild region-a as a replica and switch back")
    p.add_argument("--replication", choices=["sync", "async"], default="sync",
                   help="sync: synchronous_commit=remote_apply (RPO 0 expected); async: RPO measured")
    p.add_argument("--failure", choices=["partition", "kill", "partition-both"], default="partition",
                   help="partition: cut the inter-region link, then isolate region-a; kill: SIGKILL region-a's "
                        "primary; partition-both: region-b unreachable too (the failover cannot complete)")
    p.add_argument("--time-limit", metavar="SECONDS", help="give up on the failover after this long "
                   "(default: the --assert-rto value)")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of workload before the failure")
    p.add_argument("--isolation-delay", type=float, default=1.0,
                   help="seconds between cutting the inter-region link and cutting region-a off from clients")
    p.add_argument("--write-interval-ms", type=float, default=10.0, help="pause between sequenced writes")
    p.add_argument("--write-timeout", type=float, default=1.0, help="seconds before a write counts as failed")
    p.add_argument("--writes-after-failover", type=int, default=20,
                   help="acknowledged writes in the new primary before the phase ends")
    p.add_argument("--no-kafka", action="store_true", help="skip the Kafka brokers (and the event probes)")
    p.add_argument("--no-policy", action="store_true", help="skip OPA and the policy service (policy probes)")
    p.add_argument("--network", choices=["auto", "loopback"], default="auto",
                   help="auto: network namespaces when possible; loopback: force the fallback")
    p.add_argument("--link-delay-ms", type=float, default=0.0, help="added inter-region round trip (tc netem)")
    p.add_argument("--artifacts", type=Path, help="output folder (default: $ARTIFACTS/region or artifacts/region)")
    p.add_argument("--policies", type=Path, default=REPO_ROOT / "policies" / "rego")
    p.add_argument("--lock-wait", type=float, default=600.0, help="seconds to wait for another run to finish")
    p.add_argument("--pushgateway", metavar="URL", help="also push the figures to this Prometheus Pushgateway "
                   "(default: $IG_PUSHGATEWAY_URL; neither set: no push)")
    return p


def _pushgateway(p: argparse.ArgumentParser, flag: str | None) -> str | None:
    """The Pushgateway URL from the flag, else IG_PUSHGATEWAY_URL; a malformed one is a usage error naming it."""
    source, url = ("--pushgateway", flag) if flag is not None else ("IG_PUSHGATEWAY_URL",
                                                                     os.environ.get("IG_PUSHGATEWAY_URL", ""))
    if flag is None and not url:
        return None
    problem = report.pushgateway_url_problem(url)
    if problem:
        p.error(f"invalid setting {source}: {problem}")
    return url


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if not args.simulate_failover and not args.cleanup:
        p.error("nothing to do: give --simulate-failover (with --assert-rpo and --assert-rto) or --cleanup")
    if args.simulate_failover:
        try:
            args.rpo = parse_seconds("--assert-rpo", args.assert_rpo)
            args.rto = parse_seconds("--assert-rto", args.assert_rto)
            args.limit = parse_seconds("--time-limit", args.time_limit) if args.time_limit else args.rto
        except ThresholdError as error:
            p.error(str(error))
        for name in ("warmup", "isolation_delay", "write_interval_ms", "write_timeout"):
            if not 0 <= getattr(args, name) < 3600:
                p.error(f"--{name.replace('_', '-')} must be between 0 and 3600")
    args.pushgateway = _pushgateway(p, args.pushgateway)
    if os.geteuid() != 0 and args.network == "auto":
        print("region-test: not root; network namespaces need root, using the loopback fallback", file=sys.stderr)
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 <pid>` prints every thread's stack: for hung runs
    configure_logging("region-test")
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    paths = Paths.from_environment()
    # The drill's own clients (the residency probe, as region-test) and the policy services it starts use the
    # suite's identities: issued (or renewed) here, so the drill needs nothing from the caller's environment.
    identities = Identities(paths)
    if not identities.healthy():
        identities.start()
    os.environ.update(identities.env())
    state = RunState(paths.run / "region-test")
    restore = install_signal_handlers()
    try:
        state.acquire(args.lock_wait)
        for line in state.clean():
            print(f"region-test: cleaned leftovers of an earlier run: {line}", flush=True)
        if args.cleanup:
            return 0
        return execute(args, state, argv if argv is not None else sys.argv[1:])
    except Busy as error:
        print(f"region-test: {error}", file=sys.stderr)
        return 3
    except Interrupted as interrupted:
        print(f"region-test: {interrupted}; cleaning up", file=sys.stderr, flush=True)
        return 128 + interrupted.signum
    finally:
        for line in state.clean():
            print(f"region-test: cleanup: {line}", flush=True)
        state.release()
        restore()


def _tenants(policies: Path, nonce: str) -> tuple[list[PinnedTenant], str]:
    pinned = pinned_tenants_from_policy(policies / "ig" / "config" / "data.json")
    source = "policy data (ig/config/data.json tenants.*.residency.pinned_region)"
    if not pinned:
        pinned, source = dict(FALLBACK_TENANTS), "built-in defaults (the policy data pins no tenant)"
    return [PinnedTenant(t, r, f"igrt-resident-{t}-{nonce}") for t, r in pinned.items()
            if r in ("region-a", "region-b")], source


def execute(args: argparse.Namespace, state: RunState, argv: list[str]) -> int:
    started = time.time()
    timeline = Timeline()
    artifacts = args.artifacts or Path(os.environ.get("ARTIFACTS", REPO_ROOT / "artifacts")) / "region"
    topology = network.plan(args.network == "loopback", args.link_delay_ms)
    state.begin(topology.mode)
    if topology.mode != "netns":
        print(f"region-test: {topology.note}", flush=True)
    tenants, tenant_source = _tenants(args.policies, secrets.token_hex(6))
    rules_loaded = any(RESIDENCY_RULE in f.read_text() for f in args.policies.rglob("*.rego"))
    options = Options(args.replication == "sync", args.failure, args.limit, args.isolation_delay, args.warmup,
                      args.write_interval_ms / 1000, args.write_timeout, args.writes_after_failover)
    phases: list[PhaseResult] = []
    points: list[dict[str, Any]] = []
    error = ""
    env: regions.Regions | None = None
    try:
        env = regions.build(topology, state, timeline, synchronous=options.synchronous, with_kafka=not args.no_kafka,
                            with_policy=not args.no_policy, policies=args.policies, tenants=tenants)
        asyncio.run(_drive(env, args, options, tenants, timeline, phases, points, rules_loaded))
    except Interrupted:
        error = "interrupted"
        raise
    except Exception as failure:  # reported in the artifacts and as exit status 3
        error = f"{type(failure).__name__}: {failure}"
        timeline.add("run", "error", error=error[:2000])
    finally:
        code = _finish(args, state.dir, artifacts, started, timeline, topology, env, tenants, tenant_source, phases,
                       points, options, rules_loaded, error, argv)
    return code


async def _drive(env: regions.Regions, args: argparse.Namespace, options: Options, tenants: list[PinnedTenant],
                 timeline: Timeline, phases: list[PhaseResult], points: list[dict[str, Any]],
                 rules_loaded: bool) -> None:
    stop = asyncio.Event()
    writers = [PinnedTenantWriter(t.tenant, t.home, env.get(t.home).resident_pg.dsn(t.database),
                                  k.bootstrap if (k := env.get(t.home).kafka) else None, t.marker) for t in tenants]
    for writer in writers:
        await writer.prepare()
    tasks = [asyncio.create_task(w.run(stop, 0.1)) for w in writers]
    try:
        await asyncio.sleep(1.0)
        points.append(await proofs.collect(env, tenants, "steady-state", {}, rules_loaded))
        timeline.add("residency", "probed", point="steady-state")
        failover = await run_phase(env, "failover", env.a, env.b, options.failure, options, timeline)
        phases.append(failover)
        isolated = options.failure in ("partition", "partition-both") and env.topology.mode == "netns"
        reachable = {"region-a": not isolated, "region-b": options.failure != "partition-both"}
        points.append(await proofs.collect(env, tenants, "after-failover", reachable, rules_loaded))
        timeline.add("residency", "probed", point="after-failover")
        if args.failback and failover.promoted_at is not None:
            await heal_and_rebuild(env, env.a, env.b, options.synchronous, timeline, "failback")
            phases.append(await run_phase(env, "failback", env.b, env.a, "switchover", options, timeline,
                                           first_seq=failover.next_seq))
            await heal_and_rebuild(env, env.b, env.a, options.synchronous, timeline, "restore")
            points.append(await proofs.collect(env, tenants, "after-failback", {}, rules_loaded))
            timeline.add("residency", "probed", point="after-failback")
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        timeline.add("residency", "pinned_writers_stopped",
                     written={w.tenant: w.written for w in writers}, errors={w.tenant: w.errors for w in writers},
                     events_published={w.tenant: w.published for w in writers})


def _finish(args: argparse.Namespace, state_dir: Path, artifacts: Path, started: float, timeline: Timeline,
            topology: network.Topology, env: regions.Regions | None, tenants: list[PinnedTenant],
            tenant_source: str, phases: list[PhaseResult], points: list[dict[str, Any]], options: Options,
            rules_loaded: bool, error: str, argv: list[str]) -> int:
    cases: list[dict[str, Any]] = []
    for phase in phases:
        if phase.rto is not None and phase.rpo is not None:
            phase.verdicts = judge(phase.name, phase.rpo, phase.rto, max_rpo_seconds=args.rpo,
                                   max_rto_seconds=args.rto, require_zero_loss=options.synchronous)
        elif phase.rto is not None:
            phase.verdicts = judge(phase.name, _unmeasured_rpo(), phase.rto, max_rpo_seconds=args.rpo,
                                   max_rto_seconds=args.rto, require_zero_loss=options.synchronous)[:1]
        cases += [{"group": phase.name, "name": v.name, "status": "passed" if v.passed else "failed",
                   "message": v.message} for v in phase.verdicts]
    if args.failback and (not phases or phases[-1].name != "failback"):
        cases.append({"group": "failback", "name": "failback", "status": "failed",
                      "message": "failback not run: the failover did not complete"})
    residency = proofs.summarise(points) if points else {"passed": False, "failed": ["no probes ran"],
                                                         "never_passed": [], "policy": {}}
    cases += _residency_cases(points, residency)
    if error:
        cases.append({"group": "run", "name": "run", "status": "failed", "message": error})
    passed = bool(phases) and all(c["status"] != "failed" for c in cases)
    duration = time.time() - started
    summary = {
        "tool": "region-test", "status": "passed" if passed else "failed", "error": error or None,
        "command": ["region-test", *argv], "started_at": timeline.events[0]["at"] if timeline.events else None,
        "duration_seconds": round(duration, 3),
        "topology": {"mode": topology.mode, "note": topology.note, "notes": env.notes if env else [],
                     "regions": {r.name: {"netns": r.netns, "client_address": r.client_host,
                                          "inter_region_address": r.peer_host} for r in topology.regions}},
        "replication": {"mode": "physical streaming, region-a -> region-b",
                        "synchronous_commit": "remote_apply" if options.synchronous else "local (asynchronous)"},
        "failure": options.failure,
        "thresholds": {"rpo_seconds": args.rpo, "rto_seconds": args.rto, "time_limit_seconds": options.time_limit},
        "phases": [p.summary() for p in phases],
        "residency": residency,
    }
    proofs_doc = {"tenants": {t.tenant: {"home_region": t.home, "marker": t.marker} for t in tenants},
                  "tenant_source": tenant_source, "policy": {**policy_revision(REPO_ROOT, args.policies),
                                                             "residency_rule_in_loaded_policies": rules_loaded},
                  "points": points, "summary": residency}
    written = report.write_all(artifacts, summary, timeline.events, proofs_doc, cases, duration)
    report.copy_logs(state_dir, artifacts / report.LOGS)
    _print_summary(summary, phases, residency, written)
    if args.pushgateway:
        _push(args.pushgateway, summary)
    return 0 if passed else (3 if error and not phases else 1)


def _push(url: str, summary: dict[str, Any]) -> None:
    """Push the figures; a Pushgateway that is down costs the alerts their input, never the run its verdict."""
    try:
        group = report.push_metrics(url, summary)
    except OSError as failure:
        print(f"region-test: WARNING: could not push the figures to {url}: {failure} (they are in "
              f"{report.METRICS})", file=sys.stderr, flush=True)
        return
    print(f"  pushed to {url} ({', '.join(f'{k}={v}' for k, v in group.items())})", flush=True)


def _unmeasured_rpo() -> Any:
    from ig_region_test.measure import Rpo

    return Rpo(0, 0.0, (), 0, None, None)


def _residency_cases(points: list[dict[str, Any]], residency: dict[str, Any]) -> list[dict[str, Any]]:
    statuses: dict[str, list[str]] = {}
    for point in points:
        for tenant in point["tenants"]:
            for check in tenant["checks"]:
                statuses.setdefault(f"{tenant['tenant']}.{check['check']}.{check['region']}", []).append(
                    f"{point['point']}={check['status']}")
    cases = []
    for name, seen in sorted(statuses.items()):
        status = "failed" if any(s.endswith("=failed") for s in seen) else (
            "passed" if any(s.endswith("=passed") for s in seen) else "failed")
        cases.append({"group": "residency", "name": name, "status": status, "message": ", ".join(seen)})
    for key, status in sorted(residency["policy"].items()):
        message = {"pending": "pending: the policy layer gives no residency decision yet (residency-proofs.json)",
                   "unreachable": "not probed: a region was unreachable at every probe point"}.get(status, status)
        cases.append({"group": "residency-policy", "name": key,
                      "status": {"unreachable": "skipped"}.get(status, status), "message": message})
    return cases


def _print_summary(summary: dict[str, Any], phases: list[PhaseResult], residency: dict[str, Any],
                   written: list[Path]) -> None:
    print(f"region-test: {summary['status'].upper()} ({summary['topology']['mode']}, "
          f"{summary['replication']['synchronous_commit']}, failure={summary['failure']}, "
          f"{summary['duration_seconds']:.1f}s)")
    for phase in phases:
        rto = f"{phase.rto.seconds:.3f}s" if phase.rto and phase.rto.seconds is not None else "EXCEEDED"
        rpo = (f"{phase.rpo.lost_writes} acknowledged writes lost / {phase.rpo.lost_seconds:.3f}s"
               if phase.rpo else "not measurable")
        print(f"  {phase.name:<9} {phase.old_primary} -> {phase.new_primary}: RTO {rto}  RPO {rpo}  "
              f"({phase.acknowledged} writes acknowledged)")
        for verdict in phase.verdicts:
            print(f"    [{'ok' if verdict.passed else 'FAIL'}] {verdict.name}: {verdict.message}")
    print(f"  residency: {'passed' if residency['passed'] else 'FAILED'}; policy: "
          + (", ".join(f"{k}={v}" for k, v in sorted(residency['policy'].items())) or "not probed"))
    for line in residency["failed"] + residency["never_passed"]:
        print(f"    FAIL {line}")
    if summary["error"]:
        print(f"  error: {summary['error']}")
    print("  artifacts: " + ", ".join(str(p) for p in written), flush=True)
