"""The v1.2.1 release flow: stages in order, each shown live; the first failure stops the flow naming the stage
and its log; at the end a summary of where everything is."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from ig_release.context import ReleaseContext, StageFailed
from ig_release.reachability import unreachable
from ig_release.settings import DEMO_AUDITOR
from ig_release.stages import burn, evidence, migration, policy, portal, region


@dataclass(frozen=True)
class Stage:
    name: str
    title: str
    run: Callable[[ReleaseContext, ExitStack], str]
    # Started before the first stage runs, kept until the flow ends: what needs time to warm up (the burn stage's
    # synthetic traffic must be scraped for a while before its burst means anything) warms up under earlier stages.
    warm_up: Callable[[ReleaseContext, ExitStack], None] | None = None


STAGES: tuple[Stage, ...] = (
    Stage("policy", "policy decisions through a gateway, coverage + latency", lambda c, _: policy.run(c)),
    Stage("burn", "error-budget burn drives throttle flags, an incident and an alert", burn.run, burn.warm_up),
    Stage("migration", "add-asset-index-v3 blue/green, ACA, backout rehearsal", lambda c, _: migration.run(c)),
    Stage("region", "multi-region failover and residency probes", lambda c, _: region.run(c)),
    Stage("evidence", "signed evidence bundle, verified, registered in the ledger", lambda c, _: evidence.run(c)),
    Stage("portal", "portal serves the release; auditor verifies it offline", lambda c, _: portal.run(c)),
)


def select(names: list[str] | None) -> list[Stage]:
    if not names:
        return list(STAGES)
    known = {s.name: s for s in STAGES}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; stages: {', '.join(known)}")
    return [s for s in STAGES if s.name in names]


def run_flow(ctx: ReleaseContext, stages: list[Stage], console: Console) -> int:
    results: list[dict[str, object]] = []
    started = time.monotonic()
    console.rule(f"[bold]Maestro Conductor release {ctx.version}[/] — profile {ctx.profile.name}")
    missing = unreachable(ctx.endpoints, [s.name for s in stages])
    if missing:
        console.print("[bold red]✗ preflight: not reachable[/]: " + "; ".join(missing)
                      + "\n  start the suite first (`make up`), or point IG_* variables at it (`uv run ig-infra env`)")
        return 1
    with ExitStack() as resources, Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                            TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                                            console=console, transient=False,
                                            disable=not console.is_terminal) as progress:
        overall = progress.add_task(f"release {ctx.version}", total=len(stages))
        for stage in stages:
            if stage.warm_up is not None:
                try:
                    stage.warm_up(ctx, resources)
                except StageFailed as error:
                    progress.stop()
                    where = f"\n  log: {error.log}" if error.log else ""
                    console.print(f"[bold red]✗ stage {stage.name} failed[/] warming up: {error}{where}")
                    record(ctx, results, stage.name, "failed", f"warming up: {error}", time.monotonic())
                    return 1
        for index, stage in enumerate(stages, 1):
            task = progress.add_task(f"[{index}/{len(stages)}] {stage.name}: {stage.title}", total=None)
            if not console.is_terminal:  # CI logs and pipes: one line per stage start, no live display
                console.print(f"▶ [{index}/{len(stages)}] {stage.name}: {stage.title}")
            began = time.monotonic()
            try:
                outcome = stage.run(ctx, resources)
            except StageFailed as error:
                progress.update(task, total=1, completed=0)
                progress.stop()
                where = f"\n  log: {error.log}" if error.log else ""
                console.print(f"[bold red]✗ stage {stage.name} failed[/] after {time.monotonic() - began:.1f}s: "
                              f"{error}{where}")
                record(ctx, results, stage.name, "failed", str(error), began)
                return 1
            progress.update(task, total=1, completed=1)
            progress.advance(overall)
            progress.console.print(f"[green]✓ {stage.name}[/] ({time.monotonic() - began:.1f}s): {outcome}")
            record(ctx, results, stage.name, "passed", outcome, began)
    summary(ctx, console, time.monotonic() - started)
    return 0


def record(ctx: ReleaseContext, results: list[dict[str, object]], stage: str, state: str, detail: str,
           began: float) -> None:
    results.append({"stage": stage, "state": state, "detail": detail,
                    "seconds": round(time.monotonic() - began, 1)})
    (ctx.artifacts / "release-flow.json").write_text(json.dumps({
        "release": ctx.version, "profile": ctx.profile.name, "stages": results,
        "evidence": {k: [str(p) for p in v] for k, v in sorted(ctx.evidence.items())}, "where": ctx.summary,
    }, indent=2) + "\n")


def summary(ctx: ReleaseContext, console: Console, seconds: float) -> None:
    table = Table(title=f"release {ctx.version}: flow completed in {seconds:.0f}s", show_lines=False)
    table.add_column("what", no_wrap=True)
    table.add_column("where", overflow="fold")
    email, password = DEMO_AUDITOR
    table.add_row("demo auditor login (Dex)", f"{email} / {password}")
    for what, where in ctx.summary.items():
        table.add_row(what, where)
    for kind, paths in sorted(ctx.evidence.items()):
        table.add_row(f"artifact: {kind}", "\n".join(str(p) for p in paths))
    table.add_row("flow record", str(ctx.artifacts / "release-flow.json"))
    table.add_row("logs", str(ctx.logs))
    console.print(table)
