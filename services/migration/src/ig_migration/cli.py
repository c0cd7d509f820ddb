"""ig-migrate: plan | validate | preflight | run | status | backout.

The CLI is an orchestrator itself (it talks to PostgreSQL directly, like pgroll's), so a platform engineer can
run a change from a laptop or a job; the gRPC service offers the same operations. Exit status: 0 done or paused,
1 failed or gates blocked, 2 bad input, 3 backed out, 4 another orchestrator holds the change.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ig_migration.domain.phases import FORWARD, PhaseError, parse_phase
from ig_migration.domain.plan import PlanError
from ig_migration.planfile import read_plan
from ig_migration.store import MIGRATIONS, SCHEMA, LockHeld

if TYPE_CHECKING:
    from ig_migration.settings import Settings

# The database-facing modules (asyncpg, grpc, scipy, OpenTelemetry) load inside the commands that need them, so
# `ig-migrate validate` answers at once in a CI step.

T = TypeVar("T")
EXIT_FAILED, EXIT_BAD_INPUT, EXIT_BACKED_OUT, EXIT_LOCKED = 1, 2, 3, 4


def _settings() -> Settings:
    import structlog
    from ig_common.logging import configure_logging
    from ig_common.settings import load_settings

    from ig_migration.settings import Settings

    settings = load_settings(Settings)
    configure_logging("ig-migrate", settings.log_level, settings.region)
    # Human output owns stdout; the JSON logs go to stderr.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    return settings


async def _publish_outbox(settings: Settings, pool: Any, wait_seconds: float = 10.0) -> None:
    """Hand this run's phase events to Kafka; if Kafka is away they stay in the outbox for the service's relay."""
    from ig_common.events.outbox import OutboxRelay

    relay = OutboxRelay(pool, SCHEMA, settings.kafka_bootstrap)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        if not await pool.fetchval(f"SELECT count(*) FROM {SCHEMA}.outbox WHERE published_at IS NULL"):
            break
        await asyncio.sleep(0.1)
    stop.set()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(task, timeout=5)


def _with_database(settings: Settings, work: Callable[[Any], Awaitable[T]], publish: bool = False) -> T:
    from ig_common.db import create_pool, prepare_service_schema

    async def main() -> T:
        pool = await create_pool(settings.database_url, max_size=3)
        try:
            await prepare_service_schema(pool, SCHEMA, MIGRATIONS, settings.migration_database_url)
            result = await work(pool)
            if publish:
                await _publish_outbox(settings, pool)
            return result
        finally:
            await pool.close()

    return asyncio.run(main())


def _fail(message: str, code: int) -> None:
    click.echo(message, err=True)
    sys.exit(code)


@click.group()
def main() -> None:
    """Blue/green batch changes on PostgreSQL with gates, canary analysis and backout."""


@main.command()
@click.argument("plan_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def validate(plan_file: Path) -> None:
    """Check a plan file; a bad one is rejected naming each field."""
    try:
        plan, _ = read_plan(plan_file)
    except PlanError as error:
        lines = [f"invalid plan {plan_file}:"] + [f"  {name}: {reason}" for name, reason in error.fields]
        _fail("\n".join(lines), EXIT_BAD_INPUT)
        return
    click.echo(f"plan {plan_file} is valid: change {plan.change} on {plan.scope} "
               f"({plan.blue.table} {plan.blue.version} -> {plan.green.table} {plan.green.version})")


def _read_or_exit(plan_file: Path) -> tuple[Any, str]:
    try:
        return read_plan(plan_file)
    except PlanError as error:
        _fail(f"invalid plan {plan_file}: {error}", EXIT_BAD_INPUT)
        raise AssertionError from error  # unreachable: _fail exits


@main.command("plan")
@click.argument("plan_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def plan_command(plan_file: Path) -> None:
    """Submit a plan and show the phases it will run."""
    plan, text = _read_or_exit(plan_file)
    from ig_migration.orchestrator import commands
    settings = _settings()

    async def work(pool: Any) -> str:
        async with pool.acquire() as conn:
            _, digest = await commands.submit(conn, text)
        return str(digest)

    try:
        digest = _with_database(settings, work)
    except commands.ChangeConflict as error:
        _fail(str(error), EXIT_FAILED)
        return
    click.echo(f"submitted {plan.change} (plan sha256 {digest[:12]})")
    for phase in FORWARD[1:]:
        click.echo(f"  - {phase.value}")
    click.echo(f"backout: {plan.backout}; ACA threshold: {plan.aca.threshold if plan.aca else 'n/a'}")


@main.command()
@click.argument("change")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def preflight(change: str, as_json: bool) -> None:
    """Measure every gate of a submitted change against its limit."""
    from ig_migration.orchestrator import commands
    from ig_migration.orchestrator.preflight import gate_json
    settings = _settings()

    async def work(pool: Any) -> Any:
        async with pool.acquire() as conn:
            return await commands.preflight(conn, change, settings)

    try:
        passed, gates = _with_database(settings, work)
    except LookupError as error:
        _fail(str(error), EXIT_BAD_INPUT)
        return
    if as_json:
        click.echo(json.dumps({"passed": passed, "gates": [gate_json(g) for g in gates]}, indent=2))
    else:
        for gate in gates:
            click.echo(gate.describe())
        click.echo("preflight: " + ("PASS" if passed else "BLOCKED"))
    if not passed:
        sys.exit(EXIT_FAILED)


@main.command()
@click.argument("change", required=False)
@click.option("--plan", "plan_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="submit this plan first (the change name comes from it)")
@click.option("--until", "until", help="stop after this phase (e.g. shadow-read); run again to resume")
def run(change: str | None, plan_file: Path | None, until: str | None) -> None:
    """Run (or resume) a change phase by phase."""
    text = None
    if plan_file is not None:
        plan, text = _read_or_exit(plan_file)
        change = plan.change
    if change is None:
        _fail("give a CHANGE or --plan FILE", EXIT_BAD_INPUT)
        return
    try:
        until_phase = parse_phase(until) if until else None
    except PhaseError as error:
        _fail(str(error), EXIT_BAD_INPUT)
        return
    from ig_migration.orchestrator import commands
    from ig_migration.orchestrator.runner import Orchestrator
    settings = _settings()
    orchestrator = Orchestrator(settings.database_url, settings,
                                on_progress=lambda p: click.echo(f"backfill {p.describe()}", err=True))

    async def work(pool: Any) -> Any:
        if text is not None:
            async with pool.acquire() as conn:
                await commands.submit(conn, text)
        return await orchestrator.run(str(change), until_phase)

    try:
        outcome = _with_database(settings, work, publish=True)
    except LockHeld as error:
        _fail(str(error), EXIT_LOCKED)
        return
    except (LookupError, commands.ChangeConflict) as error:
        _fail(str(error), EXIT_FAILED)
        return
    click.echo(json.dumps({"change": outcome.change, "phase": outcome.phase.value, "state": outcome.state,
                           "aca_score": outcome.aca_score, "backed_out": outcome.backed_out,
                           "report": outcome.report_path, "detail": outcome.detail}))
    if outcome.backed_out:
        sys.exit(EXIT_BACKED_OUT)
    if outcome.state == "failed":
        sys.exit(EXIT_FAILED)


@main.command()
@click.argument("change")
@click.option("--follow", is_flag=True, help="keep printing until the change stops running")
def status(change: str, follow: bool) -> None:
    """Phase, state and backfill progress (done/total, rows/s, ETA)."""
    from ig_migration.orchestrator import commands
    settings = _settings()

    async def work(pool: Any) -> None:
        last = None
        while True:
            async with pool.acquire() as conn:
                current = await commands.status(conn, change)
            if current != last:
                click.echo(json.dumps(current.as_dict()))
                last = current
            if not follow or current.state not in ("running", "pending"):
                return
            await asyncio.sleep(0.5)

    try:
        _with_database(settings, work)
    except LookupError as error:
        _fail(str(error), EXIT_BAD_INPUT)


@main.command()
@click.argument("change")
@click.option("--batch", "batches", multiple=True, type=click.IntRange(min=1),
              help="back out only these batches (repeatable); none means a full backout")
def backout(change: str, batches: tuple[int, ...]) -> None:
    """Back a change out, fully or for some batches, validated by counts and checksums."""
    from ig_migration.orchestrator import commands
    settings = _settings()

    async def work(pool: Any) -> Any:
        return await commands.backout(settings.database_url, change, list(batches), settings)

    try:
        result = _with_database(settings, work, publish=True)
    except LockHeld as error:
        _fail(str(error), EXIT_LOCKED)
        return
    except (LookupError, commands.ChangeConflict) as error:
        _fail(str(error), EXIT_FAILED)
        return
    click.echo(json.dumps(result, default=str))
    if not result.get("validated"):
        sys.exit(EXIT_FAILED)


if __name__ == "__main__":
    main()
