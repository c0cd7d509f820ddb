"""The v1.2.1 release flow: each stage shown live, started as soon as the stages it needs passed (independent ones
side by side); a failure stops the flow naming the stage and its log; at the end a summary of where everything is."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import ExitStack
from dataclasses import dataclass

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from ig_release.context import ReleaseContext, StageFailed
from ig_release.reachability import unreachable
from ig_release.settings import DEMO_AUDITOR
from ig_release.stages import burn, evidence, failover, migration, policy, portal, region


@dataclass(frozen=True)
class Stage:
    name: str
    title: str
    run: Callable[[ReleaseContext, ExitStack], str]
    # The earlier stages this one needs finished. None: every stage listed before it (the safe default for a stage
    # that reads what the others produced). Independent stages run at the same time, each in a thread of its own.
    after: tuple[str, ...] | None = None
    # Started before the first stage runs, kept until the flow ends: what needs time to warm up (the burn stage's
    # synthetic traffic must be scraped for a while before its burst means anything) warms up from the start.
    warm_up: Callable[[ReleaseContext, ExitStack], None] | None = None


# policy, burn and region touch different parts of the suite and can run side by side (most of their time is spent
# waiting: the benchmark's open-loop pacing, Prometheus scrapes, region-test's probes); migration asks the burn
# service for SLO headroom, which the burn stage's burst takes away, so it follows burn; the suite's failover freezes
# region-a, so it waits for every stage that uses the suite; the bundle takes everything.
STAGES: tuple[Stage, ...] = (
    Stage("policy", "policy decisions through a gateway, coverage + latency", lambda c, _: policy.run(c), after=()),
    Stage("burn", "error-budget burn drives throttle flags, an incident and an alert", burn.run, after=(),
          warm_up=burn.warm_up),
    Stage("migration", "add-asset-index-v3 blue/green, ACA, backout rehearsal", lambda c, _: migration.run(c),
          after=("burn",)),
    Stage("region", "multi-region failover and residency probes", lambda c, _: region.run(c), after=()),
    # Freezes region-a: it runs alone, once every stage that uses the suite is done.
    Stage("failover", "the running suite fails over to region-b and back", lambda c, _: failover.run(c),
          after=("policy", "burn", "migration", "region")),
    Stage("evidence", "signed evidence bundle, verified, registered in the ledger", lambda c, _: evidence.run(c)),
    Stage("portal", "portal serves the release; auditor verifies it offline", lambda c, _: portal.run(c)),
)


def select(names: list[str] | None) -> list[Stage]:
    if not names:
        return list(STAGES)
    known = {s.name: s for s in STAGES}
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; stages: {', '.join(known)}")
    return [s for s in STAGES if s.name in names]


def prerequisites(stages: list[Stage]) -> dict[str, set[str]]:
    """Each stage's prerequisites among the stages that run, only ever earlier ones (so there is no cycle)."""
    needs: dict[str, set[str]] = {}
    for index, stage in enumerate(stages):
        earlier = [s.name for s in stages[:index]]
        needs[stage.name] = set(earlier) if stage.after is None else set(stage.after) & set(earlier)
    return needs


@dataclass
class _Running:
    stage: Stage
    task: TaskID
    began: float


def run_flow(ctx: ReleaseContext, stages: list[Stage], console: Console) -> int:
    """Run ``stages``, each as soon as its prerequisites passed; after a failure no stage starts, the running ones
    finish, and the flow fails naming the stage and its log."""
    results: list[dict[str, object]] = []
    started = time.monotonic()
    console.rule(f"[bold]Maestro Conductor release {ctx.version}[/] — profile {ctx.profile.name}")
    missing = unreachable(ctx.endpoints, [s.name for s in stages])
    if missing:
        console.print("[bold red]✗ preflight: not reachable[/]: " + "; ".join(missing)
                      + "\n  start the suite first (`make up`), or point IG_* variables at it (`uv run ig-infra env`)")
        return 1
    needs, passed, failed = prerequisites(stages), set[str](), False
    pending = list(stages)
    with ExitStack() as resources, Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                            TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                                            console=console, transient=False,
                                            disable=not console.is_terminal) as progress, \
            ThreadPoolExecutor(max_workers=max(len(stages), 1), thread_name_prefix="stage") as pool:
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
        running: dict[Future[str], _Running] = {}
        while pending or running:
            for stage in [s for s in pending if not failed and needs[s.name] <= passed]:
                pending.remove(stage)
                index = stages.index(stage) + 1
                task = progress.add_task(f"[{index}/{len(stages)}] {stage.name}: {stage.title}", total=None)
                if not console.is_terminal:  # CI logs and pipes: one line per stage start, no live display
                    console.print(f"▶ [{index}/{len(stages)}] {stage.name}: {stage.title}")
                running[pool.submit(stage.run, ctx, resources)] = _Running(stage, task, time.monotonic())
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                run = running.pop(future)
                seconds = time.monotonic() - run.began
                try:
                    outcome = future.result()
                except StageFailed as error:
                    failed = True
                    progress.update(run.task, total=1, completed=0)
                    where = f"\n  log: {error.log}" if error.log else ""
                    progress.console.print(f"[bold red]✗ stage {run.stage.name} failed[/] after {seconds:.1f}s: "
                                           f"{error}{where}")
                    if running:
                        progress.console.print("  waiting for the stages still running: "
                                               + ", ".join(r.stage.name for r in running.values()))
                    record(ctx, results, run.stage.name, "failed", str(error), run.began)
                    continue
                passed.add(run.stage.name)
                progress.update(run.task, total=1, completed=1)
                progress.advance(overall)
                progress.console.print(f"[green]✓ {run.stage.name}[/] ({seconds:.1f}s): {outcome}")
                record(ctx, results, run.stage.name, "passed", outcome, run.began)
    if failed:
        return 1
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
