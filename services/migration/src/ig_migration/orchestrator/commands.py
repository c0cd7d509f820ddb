"""The operations both interfaces offer (gRPC MigrationService and the ig-migrate CLI)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from ig_migration.domain.gates import GateResult, all_passed
from ig_migration.domain.phases import Phase
from ig_migration.domain.plan import Plan, plan_digest
from ig_migration.domain.progress import Progress
from ig_migration.orchestrator.backout import full_backout, partial_backout
from ig_migration.orchestrator.preflight import gate_json, run_gates
from ig_migration.orchestrator.report import write_report
from ig_migration.planfile import parse_plan
from ig_migration.settings import Settings
from ig_migration.store import state
from ig_migration.store.target import Conn, Names


class ChangeConflict(RuntimeError):
    """A different plan for a change that is already under way."""


async def submit(conn: Conn, plan_yaml: str, submitters: tuple[str, ...] = (), actor: str = "",
                 signature: str = "") -> tuple[Plan, str]:
    """Store the plan byte for byte (what an approver signs) with who submitted it and an optional signature."""
    plan = parse_plan(plan_yaml)
    digest = plan_digest(plan_yaml)
    if not await state.save_plan(conn, plan.change, plan_yaml, digest, submitters, actor, signature):
        raise ChangeConflict(f"change {plan.change} is under way with a different plan; back it out first")
    return plan, digest


async def load_plan(conn: Conn, change: str) -> Plan:
    row = await state.load_change(conn, change)
    if row is None:
        raise LookupError(f"change {change} was never submitted")
    return parse_plan(row.plan_yaml)


async def preflight(conn: Conn, change: str, settings: Settings) -> tuple[bool, list[GateResult]]:
    plan = await load_plan(conn, change)
    gates = await run_gates(conn, plan, settings)
    await state.save_result(conn, change, "preflight-check", {"passed": all_passed(gates),
                                                              "gates": [gate_json(g) for g in gates]})
    return all_passed(gates), gates


@dataclass(frozen=True)
class Status:
    change: str
    phase: str
    state: str
    detail: str
    done: int
    total: int
    rows_per_second: float
    eta_seconds: float
    updated_at: datetime
    run_id: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "updated_at": self.updated_at.isoformat()}


async def status(conn: Conn, change: str) -> Status:
    row = await state.load_change(conn, change)
    if row is None:
        raise LookupError(f"change {change} was never submitted")
    checkpoint = await state.load_checkpoint(conn, change)
    progress = Progress(checkpoint.done, checkpoint.total, checkpoint.active_seconds) if checkpoint else None
    updated = max(row.updated_at, checkpoint.updated_at) if checkpoint else row.updated_at
    eta = progress.eta_seconds if progress else 0.0
    return Status(change, row.phase.value, row.state, row.detail, progress.done if progress else 0,
                  progress.total if progress else 0, progress.rows_per_second if progress else 0.0,
                  eta if eta != float("inf") else -1.0, updated, row.run_id)


async def backout(dsn: str, change: str, batches: list[int], settings: Settings) -> dict[str, Any]:
    """Takes the change's advisory lock like a run does: a backout never races an orchestrator mid-phase."""
    lock_conn = await asyncpg.connect(dsn)
    try:
        await state.try_lock(lock_conn, change)
        conn = await asyncpg.connect(dsn)
        try:
            plan = await load_plan(conn, change)
            names = Names.of(plan)
            row = await state.load_change(conn, change)
            assert row is not None
            if (await state.load_results(conn, change)).get("contract", {}).get("dropped_blue"):
                raise ChangeConflict(f"change {change} was contracted: blue {plan.blue.table} is gone, nothing to "
                                     f"back out to")
            if batches:
                result = await partial_backout(conn, plan, names, change, batches)
            else:
                if row.phase in (Phase.BACKED_OUT, Phase.FAILED):
                    raise ChangeConflict(f"change {change} is already {row.phase.value}")
                result = await full_backout(conn, plan, names, change, row.phase, reason="operator request")
            result["report_path"] = str(await write_report(conn, plan, change, settings.migration_artifacts_dir))
            return result
        finally:
            await conn.close()
    finally:
        await lock_conn.close()
