"""Failover stage: `make failover` then `make failback` on the running two-region suite (``ig-infra failover`` /
``failback``, ``ig_region_test.suite_cli``): region-a partitioned, region-b's global database promoted, region-b
serving the global tenant and refusing the pinned one, RPO and RTO measured; then region-a back as the primary.

It freezes region-a's processes, so it runs alone: after the stages that use the suite, before the bundle, which
takes its reports. A flow driving a suite of its own, or a suite without region-b, has nothing to fail over."""

from __future__ import annotations

import json

from ig_release.context import ReleaseContext, StageFailed
from ig_release.process import console_script, run_logged
from ig_release.stages.region import drives_make_up_suite, own_suite

NOT_READY = 3  # ig_region_test.suite_cli: the suite is not in a state to fail over (no region-b, ...)


def partitioned() -> bool:
    """Whether `ig-infra failover` left region-a partitioned (its state file; `ig-infra failback` removes it)."""
    from ig_infra.cli import FAILOVER_STATE
    from ig_infra.paths import Paths

    return bool((Paths.from_environment().run / FAILOVER_STATE).exists())


def run(ctx: ReleaseContext) -> str:
    if not drives_make_up_suite(ctx):
        return f"{own_suite(ctx)}: no suite failover"
    out = ctx.stage_dir("failover")
    log = ctx.logs / "suite-failover.log"
    failover, failback = out / "suite-failover.json", out / "suite-failback.json"
    for report in (failover, failback):  # an earlier flow's must not pass for this one's
        report.unlink(missing_ok=True)
    done = run_logged([console_script("ig-infra"), "failover", "--max-rto", "10", "--out", str(failover)], log,
                      ok=(0, 1, NOT_READY), what="ig-infra failover", timeout=300)
    if done.returncode == NOT_READY and not partitioned():
        return f"the suite cannot fail over ({done.stderr.strip()[-200:]}): no suite failover"
    back = run_logged([console_script("ig-infra"), "failback", "--out", str(failback)], log, ok=(0, 1, NOT_READY),
                      what="ig-infra failback", timeout=300)
    if back.returncode != 0:
        raise StageFailed("the failback did not complete: region-a may still be partitioned (run `make failback`)",
                          log)
    if done.returncode != 0:
        raise StageFailed("the suite's failover failed a check (see the report)", log)
    for report in (failover, failback):
        ctx.add_evidence("multi-region", report)
    figures = json.loads(failover.read_text())
    back_figures = json.loads(failback.read_text())
    ctx.summary["suite failover report"] = str(failover)
    return (f"RTO {figures['rto_seconds']} s (goal 10 s), RPO {figures['rpo_lost_writes']} acknowledged writes "
            f"lost; region-b served beta and refused alpha; failback by "
            f"{back_figures['region_a_rejoined']['method']}, region-a primary again "
            f"({'inter-region link cut' if figures.get('layout') == 'netns' else 'loopback: FALLBACK'})")
