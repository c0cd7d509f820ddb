"""Region stage: region-test's readiness run (failover with measured RPO/RTO, residency probes) for the profile."""

from __future__ import annotations

import json

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
    return f"{figures}; residency probes passed ({'netns' if 'FALLBACK' not in log.read_text() else 'loopback'})"
