"""ig-migrate: plan | validate | preflight | run | status | backout | approve | keygen.

The CLI is an orchestrator itself (it talks to PostgreSQL directly, like pgroll's), so a platform engineer can
run a change from a laptop or a job; the gRPC service offers the same operations. Exit status: 0 done or paused,
1 failed or gates blocked, 2 bad input, 3 backed out, 4 another orchestrator holds the change.

`approve` and `keygen` touch no database: an approver signs a plan file (the detached signature the service's Run
demands) with a key whose public half is listed in the service's IG_MIGRATION_APPROVERS directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ig_migration.domain.phases import FORWARD, PhaseError, parse_phase
from ig_migration.domain.plan import PlanError, plan_digest
from ig_migration.planfile import read_plan
from ig_migration.store import MIGRATIONS, SCHEMA, LockHeld

if TYPE_CHECKING:
    from ig_migration.settings import Settings

# The database-facing modules (asyncpg, grpc, scipy, OpenTelemetry) load inside the commands that need them, so
# `ig-migrate validate` answers at once in a CI step.

T = TypeVar("T")
EXIT_FAILED, EXIT_BAD_INPUT, EXIT_BACKED_OUT, EXIT_LOCKED = 1, 2, 3, 4
# An approver's name is a file name in the approvers directory and is compared with SPIFFE workload names.
APPROVER_NAME = r"[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?"


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
    from ig_common.settings import load_identity

    # The migration schema's outbox holds ig.migration.v1 events, which only the migration identity may write.
    relay = OutboxRelay(pool, SCHEMA, settings.kafka_bootstrap, tls=load_identity(settings).client_ssl_context)
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
    """Blue/green batch changes on PostgreSQL with gates, canary analysis and backout.

    The migration service runs a plan only when an approver other than its submitter has signed it:
    `ig-migrate approve --key approver.key PLAN > PLAN.sig`, the signature handed to Submit or Run.
    """


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
    """Run (or resume) a change phase by phase.

    This drives PostgreSQL directly with the database credentials it is given, which gate it; the migration
    service's Run, reachable over the network, demands an approver's signature instead.
    """
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


@main.command()
@click.argument("plan_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--key", "key_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="the approver's ECDSA P-256 private key (unencrypted PEM, PKCS#8 or SEC1)")
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path),
              help="write the signature here instead of stdout")
def approve(plan_file: Path, key_file: Path, out_file: Path | None) -> None:
    """Sign a plan file: the detached signature the migration service demands before it runs the plan.

    The signature covers the file's exact bytes (ECDSA P-256, SHA-256, base64 DER, as `cosign sign-blob --key`
    makes), so any edit afterwards voids it; `cosign verify-blob --key NAME.pub --signature PLAN.sig PLAN` checks
    it. Hand it to the service with the plan (SubmitRequest.signature or RunRequest.signature). The approver must
    be another identity than the one that submits the plan.
    """
    from ig_migration.domain.approval import private_key_from_pem, sign_plan

    plan, text = _read_or_exit(plan_file)
    try:
        key = private_key_from_pem(key_file.read_bytes())
    except ValueError as error:
        _fail(f"--key {key_file}: {error}", EXIT_BAD_INPUT)
        return
    if plan_file.read_bytes() != text.encode("utf-8"):
        _fail(f"{plan_file} is not plain UTF-8 text; the service could not store it byte for byte", EXIT_BAD_INPUT)
    signature = sign_plan(key, text)
    if out_file is None:
        click.echo(signature)
    else:
        out_file.write_text(signature + "\n", encoding="ascii")
    click.echo(f"signed plan {plan.change} (sha256 {plan_digest(text)})", err=True)


@main.command()
@click.option("--name", required=True, help="the approver's identity (workload or user name), e.g. approver")
@click.option("--out-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="writes NAME.key (private, 0600) and NAME.pub (for the service's IG_MIGRATION_APPROVERS)")
def keygen(name: str, out_dir: Path) -> None:
    """Make an approver's ECDSA P-256 signing key pair."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    if not re.fullmatch(APPROVER_NAME, name):
        _fail(f"--name: must match {APPROVER_NAME}", EXIT_BAD_INPUT)
    key = ec.generate_private_key(ec.SECP256R1())
    out_dir.mkdir(parents=True, exist_ok=True)
    private = out_dir / f"{name}.key"
    if private.exists():
        _fail(f"{private} exists; not overwriting a signing key", EXIT_BAD_INPUT)
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    (out_dir / f"{name}.pub").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    click.echo(f"{private} (keep private) and {out_dir / f'{name}.pub'} (list in IG_MIGRATION_APPROVERS)")


if __name__ == "__main__":
    main()
