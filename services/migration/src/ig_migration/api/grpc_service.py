"""ig.migration.v1.MigrationService: validates requests, calls the orchestrator, translates its outcomes.

Run blocks until the run stops (completed, paused at until_phase, backed out or failed); watch it meanwhile with
the Status stream from another call. Errors: INVALID_ARGUMENT naming the field, NOT_FOUND for an unknown change,
FAILED_PRECONDITION when another orchestrator holds the change (the message says who), the plan conflicts, or the
plan lacks an approval: Run starts (or resumes) only a plan signed by a configured approver (IG_MIGRATION_APPROVERS)
who is not among its submitters. The submitter is the verified caller (the authorization interceptor's), never a
request field.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any, NoReturn

import asyncpg
import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from ig.migration.v1 import migration_pb2, migration_pb2_grpc
from ig_common.authz import Caller, current_caller

from ig_migration.domain.approval import ApprovalRefused, ApproverKey
from ig_migration.domain.phases import PhaseError, parse_phase
from ig_migration.domain.plan import CHANGE_NAME, PlanError
from ig_migration.orchestrator import commands
from ig_migration.orchestrator.runner import Orchestrator, RequiredApproval
from ig_migration.settings import Settings
from ig_migration.store import LockHeld
from ig_migration.store.approvers import load_approvers

Context = grpc.aio.ServicerContext[Any, Any]
STATUS_POLL_SECONDS = 0.5


async def _abort(context: Context, code: grpc.StatusCode, message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("unreachable: abort raises")


async def _valid_change(change: str, context: Context) -> str:
    if not re.fullmatch(CHANGE_NAME, change):
        await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"change: must match {CHANGE_NAME}")
    return change


async def _caller(context: Context) -> Caller:
    try:
        return current_caller()
    except PermissionError as error:  # no interceptor in front of us: refuse rather than record nobody
        await _abort(context, grpc.StatusCode.UNAUTHENTICATED, str(error))


def submitter_identities(caller: Caller) -> tuple[str, ...]:
    """The names an approver's key entry is compared with: the workload and, when forwarded, the end user."""
    return (caller.workload.name,) + ((caller.user.subject,) if caller.user is not None else ())


def _gate_pb(gate: Any) -> migration_pb2.GateResult:
    return migration_pb2.GateResult(gate=gate.gate, passed=gate.passed, measured=gate.measured, limit=gate.limit,
                                    detail=gate.detail)


def _status_pb(status: commands.Status) -> migration_pb2.StatusResponse:
    stamp = Timestamp()
    stamp.FromDatetime(status.updated_at)
    return migration_pb2.StatusResponse(change=status.change, phase=status.phase, done=status.done,
                                        total=status.total, rows_per_second=status.rows_per_second,
                                        eta_seconds=status.eta_seconds, updated_at=stamp, state=status.state,
                                        detail=status.detail, run_id=status.run_id)


class MigrationServicer(migration_pb2_grpc.MigrationServiceServicer):
    def __init__(self, pool: asyncpg.Pool, settings: Settings, stop: asyncio.Event) -> None:
        self._pool = pool
        self._settings = settings
        self._stop = stop

    async def _approvers(self, context: Context) -> list[ApproverKey]:
        """Read afresh for every Run, so a key removed from the directory approves nothing more."""
        directory = self._settings.migration_approvers
        if directory is None:
            return []  # verify_approval refuses, naming the missing setting
        try:
            return await asyncio.to_thread(load_approvers, directory)
        except ValueError as error:
            await _abort(context, grpc.StatusCode.FAILED_PRECONDITION, f"approver keys unusable: {error}")

    async def Submit(self, request: migration_pb2.SubmitRequest, context: Context) -> migration_pb2.SubmitResponse:
        caller = await _caller(context)
        if not request.plan_yaml.strip():
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "plan_yaml: must not be empty")
        try:
            async with self._pool.acquire() as conn:
                plan, digest = await commands.submit(conn, request.plan_yaml, submitter_identities(caller),
                                                     caller.actor, request.signature)
        except PlanError as error:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"plan_yaml: {error}")
        except commands.ChangeConflict as error:
            await _abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(error))
        return migration_pb2.SubmitResponse(change=plan.change, plan_sha256=digest, submitted_by=caller.actor)

    async def Preflight(self, request: migration_pb2.PreflightRequest,
                        context: Context) -> migration_pb2.PreflightResponse:
        change = await _valid_change(request.change, context)
        try:
            async with self._pool.acquire() as conn:
                passed, gates = await commands.preflight(conn, change, self._settings)
        except LookupError as error:
            await _abort(context, grpc.StatusCode.NOT_FOUND, str(error))
        return migration_pb2.PreflightResponse(passed=passed, gates=[_gate_pb(g) for g in gates])

    async def Run(self, request: migration_pb2.RunRequest, context: Context) -> migration_pb2.RunResponse:
        change = await _valid_change(request.change, context)
        try:
            until = parse_phase(request.until_phase) if request.until_phase else None
        except PhaseError as error:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"until_phase: {error}")
        approvers = await self._approvers(context)
        try:
            outcome = await Orchestrator(self._settings.database_url, self._settings).run(
                change, until, RequiredApproval(approvers, request.signature))
        except ApprovalRefused as error:
            await _abort(context, grpc.StatusCode.FAILED_PRECONDITION, f"change {change}: {error}")
        except LockHeld as error:
            await _abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(error))
        except LookupError as error:
            await _abort(context, grpc.StatusCode.NOT_FOUND, str(error))
        return migration_pb2.RunResponse(change=outcome.change, phase=outcome.phase.value,
                                         aca_score=outcome.aca_score, backed_out=outcome.backed_out,
                                         report_path=outcome.report_path, detail=outcome.detail,
                                         approved_by=outcome.approved_by, run_id=outcome.run_id)

    async def Status(self, request: migration_pb2.StatusRequest,
                     context: Context) -> AsyncIterator[migration_pb2.StatusResponse]:
        change = await _valid_change(request.change, context)
        last = None
        while True:
            try:
                async with self._pool.acquire() as conn:
                    current = await commands.status(conn, change)
            except LookupError as error:
                await _abort(context, grpc.StatusCode.NOT_FOUND, str(error))
            if current != last:
                yield _status_pb(current)
                last = current
            if not request.follow or current.state not in ("running", "pending") or self._stop.is_set():
                return
            await asyncio.sleep(STATUS_POLL_SECONDS)

    async def Backout(self, request: migration_pb2.BackoutRequest, context: Context) -> migration_pb2.BackoutResponse:
        change = await _valid_change(request.change, context)
        if any(b < 1 for b in request.batches):
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "batches: batch numbers start at 1")
        try:
            result = await commands.backout(self._settings.database_url, change, list(request.batches),
                                            self._settings)
        except LockHeld as error:
            await _abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(error))
        except commands.ChangeConflict as error:
            await _abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(error))
        except LookupError as error:
            await _abort(context, grpc.StatusCode.NOT_FOUND, str(error))
        return migration_pb2.BackoutResponse(
            change=change, validated=bool(result.get("validated")), detail=str(result.get("detail", "")),
            blue_rows=int(result.get("blue_rows", 0)), green_rows=int(result.get("green_rows", 0)),
            blue_checksum=str(result.get("blue_checksum", "")), green_checksum=str(result.get("green_checksum", "")))
