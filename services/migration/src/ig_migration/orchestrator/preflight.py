"""The pre-flight gates: load, storage and SLO headroom, each measured against its limit."""

from __future__ import annotations

import grpc
import structlog

from ig_migration.adapters.burn import remaining_budget
from ig_migration.domain.gates import Bound, GateResult, storage_gate
from ig_migration.domain.plan import Check, Plan
from ig_migration.settings import Settings
from ig_migration.store import health, target
from ig_migration.store.target import Conn

log = structlog.get_logger(__name__)


async def load_gates(conn: Conn, plan: Plan) -> list[GateResult]:
    load = await health.measure_load(conn)
    gates = plan.gates
    lag_detail = (f"{load.replicas} replica(s) in pg_stat_replication" if load.replicas
                  else "no replica attached (pg_stat_replication empty)")
    return [
        GateResult("load.active-backends", load.active_backends, gates.max_active_backends, Bound.AT_MOST,
                   "active client backends on the server (pg_stat_activity)"),
        GateResult("load.lock-waits", load.lock_waits, gates.max_lock_waits, Bound.AT_MOST,
                   "ungranted lock requests (pg_locks)"),
        GateResult("load.replication-lag-seconds", round(load.replication_lag_seconds, 3),
                   gates.max_replication_lag_seconds, Bound.AT_MOST, lag_detail),
    ]


async def storage_gate_for(conn: Conn, plan: Plan, settings: Settings) -> GateResult:
    # Green holds a copy of every blue row plus its indexes; blue's total size (heap + indexes + toast) is the
    # estimate, and the index the change adds is covered by the safety factor.
    estimate = await target.relation_bytes(conn, plan.blue.table)
    room = await health.measure_free_space(conn, settings.db_free_bytes)
    return storage_gate(max(estimate, 1), room.free_bytes, plan.gates.storage_safety_factor, room.method)


async def slo_gate(plan: Plan, settings: Settings) -> GateResult:
    limit = plan.gates.min_error_budget_remaining
    service = plan.gates.slo_service
    if settings.burn_grpc:
        try:
            remaining, detail = await remaining_budget(settings.burn_grpc, service)
        except (grpc.RpcError, LookupError, OSError) as error:
            message = error.details() if isinstance(error, grpc.aio.AioRpcError) else str(error)
            return GateResult("slo-headroom", 0.0, limit, Bound.AT_LEAST,
                              f"BurnService {settings.burn_grpc} unusable, failing closed: {message}")
        return GateResult("slo-headroom", round(remaining, 4), limit, Bound.AT_LEAST, detail)
    if settings.slo_headroom is not None:
        return GateResult("slo-headroom", settings.slo_headroom, limit, Bound.AT_LEAST,
                          "configured value IG_SLO_HEADROOM (no BurnService: IG_BURN_GRPC unset)")
    return GateResult("slo-headroom", 0.0, limit, Bound.AT_LEAST,
                      "no BurnService (IG_BURN_GRPC unset) and no IG_SLO_HEADROOM configured: failing closed")


async def run_gates(conn: Conn, plan: Plan, settings: Settings) -> list[GateResult]:
    results: list[GateResult] = []
    if Check.LOAD in plan.checks:
        results += await load_gates(conn, plan)
    if Check.DISK_SPACE in plan.checks:
        results.append(await storage_gate_for(conn, plan, settings))
    if Check.SLO_HEADROOM in plan.checks:
        results.append(await slo_gate(plan, settings))
    for result in results:
        log.info("gate", gate=result.gate, passed=result.passed, measured=result.measured, limit=result.limit,
                 detail=result.detail)
    return results


def gate_json(result: GateResult) -> dict[str, object]:
    return {"gate": result.gate, "passed": result.passed, "measured": result.measured, "limit": result.limit,
            "bound": result.bound.value, "detail": result.detail}
