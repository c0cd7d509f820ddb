"""Region stage: region-test's readiness run (failover with measured RPO/RTO, residency probes) for the profile."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ig_release.context import ReleaseContext, StageFailed
from ig_release.process import console_script, run_logged

# region-test lays its artifacts out by evidence type; the timeline of the drill is the DR log.
ARTIFACT_TYPES = {
    "multi-region/multi-region-results.json": "multi-region",
    "multi-region/multi-region-metrics.prom": "multi-region",
    "residency-proof/residency-proofs.json": "residency-proof",
    "multi-region/multi-region-timeline.json": "dr-log",
    "multi-region/multi-region-junit.xml": "test-report",
}


def run(ctx: ReleaseContext) -> str:
    out = ctx.stage_dir("region")
    log = ctx.logs / "region-test.log"
    run_logged([console_script("region-test"), *ctx.profile.region_args, "--artifacts", str(out)], log,
               what="region-test", timeout=900)
    for name, kind in ARTIFACT_TYPES.items():
        ctx.add_evidence(kind, out / name)
    results = json.loads((out / "multi-region" / "multi-region-results.json").read_text())
    phases = results.get("phases", [])
    if not phases:
        raise StageFailed("region-test wrote no failover phase", log)
    figures = ", ".join(f"{p['phase']}: RTO {p['rto_seconds']:.1f} s, RPO {p['rpo_lost_writes']} writes"
                        for p in phases)
    layout = 'netns' if 'FALLBACK' not in log.read_text() else 'loopback'
    suite = suite_residency(ctx, out, ctx.logs / "suite-residency.log")
    return f"{figures}; residency probes passed ({layout}); {suite}"


def drives_make_up_suite(ctx: ReleaseContext) -> bool:
    """True when the flow drives `make up`'s suite. The suite's own proofs and drills act on that suite; a flow
    driving a suite of its own (the e2e test, `ig-release job --start-suite`) would prove, or fail on, another suite
    than the one it released."""
    from ig_infra.services import SERVICES

    policy = next(spec for spec in SERVICES if spec.name == "policy")
    return ctx.endpoints.policy_grpc == f"127.0.0.1:{policy.grpc_port}"


def own_suite(ctx: ReleaseContext) -> str:
    return f"the flow drives a suite of its own (IG_POLICY_GRPC {ctx.endpoints.policy_grpc}), not `make up`'s"


def suite_residency(ctx: ReleaseContext, out: Path, log: Path) -> str:
    """The running suite's own proof (``ig_region_test.suite_proof``) when `make up` runs region-b: alpha's data
    written in region-a is nowhere in region-b's stores, read directly. A failed proof fails the stage."""
    proof = out / "residency-proof" / "suite-residency-proof.json"
    if not drives_make_up_suite(ctx):
        return f"{own_suite(ctx)}: no suite residency proof"
    done = run_logged([sys.executable, "-m", "ig_region_test.suite_proof", "--tenant", "alpha", "--out", str(proof)],
                      log, ok=(0, 2), what="the suite's residency proof", timeout=300)
    if done.returncode == 2:
        return "the suite runs no region-b: no suite residency proof"
    ctx.add_evidence("residency-proof", proof)
    return "suite residency proof passed (region-b's stores hold nothing of alpha)"
