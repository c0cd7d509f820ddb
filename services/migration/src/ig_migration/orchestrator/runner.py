"""One orchestrator driving one change: holds the change's advisory lock, runs the remaining phases in order and
records each transition (timeline + outbox event) so a restarted orchestrator resumes after the last one."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog
from opentelemetry import trace
from prometheus_client import Counter, Gauge

from ig_migration.domain import aca as aca_judge
from ig_migration.domain.approval import ApproverKey, verify_approval
from ig_migration.domain.gates import all_passed
from ig_migration.domain.phases import Phase, remaining
from ig_migration.domain.plan import Plan
from ig_migration.domain.progress import Progress
from ig_migration.orchestrator import canary
from ig_migration.orchestrator.backout import full_backout
from ig_migration.orchestrator.preflight import gate_json, run_gates
from ig_migration.orchestrator.report import write_report
from ig_migration.planfile import parse_plan
from ig_migration.settings import Settings
from ig_migration.store import SCHEMA, health, state, target
from ig_migration.store.target import Names

log = structlog.get_logger(__name__)
tracer = trace.get_tracer(__name__)

ROWS_COPIED = Counter("ig_migration_backfill_rows_total", "Rows copied blue -> green by the backfill", ["change"])
BACKFILL_DONE = Gauge("ig_migration_backfill_progress_ratio", "Backfill done / total", ["change"])
THROTTLED = Counter("ig_migration_throttled_seconds_total", "Seconds the backfill waited on load or lag", ["change"])
ACA_SCORE = Gauge("ig_migration_aca_score", "Last canary score (0..1)", ["change"])
CUTOVER_LOCK = Gauge("ig_migration_cutover_lock_milliseconds", "Lock time of the last cutover", ["change"])


class RunFailed(RuntimeError):
    """A phase could not complete; blue keeps serving (the run cleaned up or backed out)."""


@dataclass(frozen=True)
class RequiredApproval:
    """Run only a plan signed by one of ``approvers`` who did not submit it. ``signature`` is the one handed to
    this run; empty means the one stored with the plan."""

    approvers: Sequence[ApproverKey]
    signature: str = ""


class NotYet(RuntimeError):
    """A phase must wait (the contract's grace period); the run pauses and a later run continues."""


@dataclass
class RunOutcome:
    change: str
    phase: Phase
    state: str
    aca_score: float = 0.0
    backed_out: bool = False
    report_path: str = ""
    detail: str = ""
    approved_by: str = ""
    run_id: str = ""


@dataclass
class Orchestrator:
    dsn: str
    settings: Settings
    on_progress: Callable[[Progress], None] | None = None
    _conn: asyncpg.Connection | None = field(default=None, init=False)

    async def run(self, change: str, until: Phase | None = None,
                  approval: RequiredApproval | None = None) -> RunOutcome:
        """Run or resume ``change``. With ``approval``, the stored plan is verified under the change's lock, before
        anything runs, and exactly the verified text is what runs (ApprovalRefused otherwise)."""
        lock_conn = await asyncpg.connect(self.dsn)
        try:
            await state.try_lock(lock_conn, change)
            self._conn = await asyncpg.connect(self.dsn)
            try:
                return await self._run_locked(change, until, approval)
            finally:
                await self._conn.close()
        finally:
            await lock_conn.close()

    @property
    def conn(self) -> asyncpg.Connection:
        assert self._conn is not None, "run() opens the working connection"
        return self._conn

    async def _run_locked(self, change: str, until: Phase | None, approval: RequiredApproval | None) -> RunOutcome:
        row = await state.load_change(self.conn, change)
        if row is None:
            raise LookupError(f"change {change} was never submitted")
        approved_by = ""
        if approval is not None:
            signature = approval.signature or row.signature
            verdict = verify_approval(row.plan_yaml, signature, approval.approvers, row.submitted_by)
            await state.record_approval(self.conn, change, signature, verdict.approver)
            approved_by = verdict.approver
            log.info("plan_approved", change=change, approver=verdict.approver, key=verdict.key_fingerprint,
                     plan_sha256=verdict.plan_sha256, submitted_by=list(row.submitted_by))
        plan = parse_plan(row.plan_yaml)
        names = Names.of(plan)
        done = row.phase
        run_id = await state.start_run(self.conn, change)
        log.info("run_started", change=change, run_id=run_id, after=done.value)
        await state.set_state(self.conn, change, "running", f"resuming after {done.value}",
                              owner=state.orchestrator_identity())
        outcome = RunOutcome(change, done, "running", approved_by=approved_by, run_id=run_id)
        for phase in remaining(done, until):
            with tracer.start_as_current_span(f"migration.{phase.value}") as span:
                span.set_attribute("ig.migration.change", change)
                log.info("phase_started", change=change, phase=phase.value)
                try:
                    detail = await self._phase(phase, plan, names, change)
                except NotYet as waiting:
                    outcome.state, outcome.detail = "paused", str(waiting)
                    break
                except Exception as error:  # any failure must leave blue serving, then surface
                    log.error("phase_failed", change=change, phase=phase.value, error=str(error))
                    failed = await self._fail(plan, names, change, done, phase, str(error) or repr(error))
                    failed.approved_by, failed.run_id = approved_by, run_id
                    return failed
                async with self.conn.transaction():
                    await state.record_transition(self.conn, change, done, phase, detail)
                log.info("phase_completed", change=change, phase=phase.value, detail=detail)
                done = phase
                outcome.phase = phase
            if phase is Phase.ACA:
                result = (await state.load_results(self.conn, change)).get("aca", {})
                outcome.aca_score = float(result.get("score", 0.0))
                if not result.get("passed", False):
                    backout = await full_backout(self.conn, plan, names, change, done,
                                                 reason=f"ACA score {outcome.aca_score:.2f} < "
                                                        f"{result.get('threshold')}")
                    outcome.phase, outcome.backed_out = Phase.BACKED_OUT, True
                    outcome.state, outcome.detail = "backed-out", backout["detail"]
                    break
        else:
            outcome.state = "completed" if done is Phase.COMPLETED else "paused"
            outcome.detail = f"stopped after {done.value}" if outcome.state == "paused" else "completed"
        await state.set_state(self.conn, change, outcome.state, outcome.detail)
        outcome.report_path = str(await write_report(self.conn, plan, change, self.settings.migration_artifacts_dir))
        return outcome

    async def _fail(self, plan: Plan, names: Names, change: str, done: Phase, phase: Phase,
                    error: str) -> RunOutcome:
        row = await state.load_change(self.conn, change)
        detail = f"{phase.value} failed: {error}"
        if row is not None and row.cutover_committed:
            backout = await full_backout(self.conn, plan, names, change, done, reason=detail)
            outcome = RunOutcome(change, Phase.BACKED_OUT, "backed-out", backed_out=True,
                                 detail=f"{detail}; {backout['detail']}")
        else:
            # Before cutover blue serves everything: discarding green is all it takes to undo the change.
            await target.remove_dual_write(self.conn, names, plan.cutover.lock_timeout_ms)
            results = await state.load_results(self.conn, change)
            if results.get("expand", {}).get("created_green"):
                await target.drop_table(self.conn, names.green, plan.cutover.lock_timeout_ms)
            async with self.conn.transaction():
                await state.record_transition(self.conn, change, done, Phase.FAILED, detail)
                await state.save_result(self.conn, change, "failure", {"phase": phase.value, "error": error,
                                                                       "serving": "blue"})
            outcome = RunOutcome(change, Phase.FAILED, "failed", detail=f"{detail}; blue keeps serving")
        await state.set_state(self.conn, change, outcome.state, outcome.detail)
        outcome.report_path = str(await write_report(self.conn, plan, change, self.settings.migration_artifacts_dir))
        return outcome

    async def _phase(self, phase: Phase, plan: Plan, names: Names, change: str) -> str:
        handlers: dict[Phase, Callable[[Plan, Names, str], Awaitable[str]]] = {
            Phase.PREFLIGHT: self._preflight, Phase.EXPAND: self._expand, Phase.DUAL_WRITE: self._dual_write,
            Phase.BACKFILL: self._backfill, Phase.SHADOW_READ: self._shadow_read, Phase.BASELINE: self._baseline,
            Phase.CUTOVER: self._cutover, Phase.ACA: self._aca, Phase.VERIFY: self._verify,
            Phase.CONTRACT: self._contract, Phase.COMPLETED: self._complete,
        }
        return await handlers[phase](plan, names, change)

    async def _preflight(self, plan: Plan, names: Names, change: str) -> str:
        gates = await run_gates(self.conn, plan, self.settings)
        await state.save_result(self.conn, change, "preflight", {"passed": all_passed(gates),
                                                                 "gates": [gate_json(g) for g in gates]})
        if not all_passed(gates):
            raise RunFailed("gates blocked the run: " + "; ".join(g.describe() for g in gates if not g.passed))
        return f"{len(gates)} gates passed"

    async def _expand(self, plan: Plan, names: Names, change: str) -> str:
        results = (await state.load_results(self.conn, change)).get("expand", {"steps": [], "created_green": None})
        if results["created_green"] is None:
            if await target.table_exists(self.conn, names.green):
                raise RunFailed(f"green table {names.green} exists already and this change did not create it")
            results["created_green"] = True
            await state.save_result(self.conn, change, "expand", results)
        dropped = await target.drop_invalid_indexes(self.conn, names.green)
        for step in plan.green.steps:
            if step.name in results["steps"]:
                continue
            sql = step.sql.replace("{green}", names.green_sql).replace("{blue}", names.blue_sql)
            started = time.perf_counter()
            await target.run_step(self.conn, sql, plan.cutover.lock_timeout_ms)
            results["steps"].append(step.name)
            results.setdefault("timings_ms", {})[step.name] = round((time.perf_counter() - started) * 1000, 1)
            await state.save_result(self.conn, change, "expand", results)
        columns = await target.columns_of(self.conn, names.blue)
        await target.ensure_view(self.conn, names, columns)
        return f"{len(plan.green.steps)} green steps applied" + (f"; dropped invalid {dropped}" if dropped else "")

    async def _dual_write(self, plan: Plan, names: Names, change: str) -> str:
        columns = await target.columns_of(self.conn, names.blue)
        missing = set(columns) - set(await target.columns_of(self.conn, names.green))
        if missing:
            raise RunFailed(f"green table {names.green} lacks blue's columns {sorted(missing)}")
        await target.install_dual_write(self.conn, names, columns, plan.cutover.lock_timeout_ms)
        return f"trigger {names.forward_trigger} copies every write on {names.blue} into {names.green}"

    async def _wait_for_headroom(self, plan: Plan) -> float:
        waited = 0.0
        limits = plan.throttle
        while True:
            load = await health.measure_load(self.conn)
            if (load.active_backends <= limits.max_active_backends and load.lock_waits <= limits.max_lock_waits
                    and load.replication_lag_seconds <= limits.max_replication_lag_seconds):
                return waited
            log.info("backfill_throttled", active=load.active_backends, lock_waits=load.lock_waits,
                     lag=load.replication_lag_seconds)
            await asyncio.sleep(limits.pause_seconds)
            waited += limits.pause_seconds

    async def _backfill(self, plan: Plan, names: Names, change: str) -> str:
        columns = await target.columns_of(self.conn, names.blue)
        checkpoint = await state.load_checkpoint(self.conn, change)
        if checkpoint is None:
            # The trigger is in place, so rows above today's max key reach green without the backfill.
            lo, hi, total = await target.key_bounds(self.conn, names.blue, names.key)
            await state.start_checkpoint(self.conn, change, lo, hi, total)
            checkpoint = await state.load_checkpoint(self.conn, change)
            assert checkpoint is not None
        last, end = checkpoint.last_key, checkpoint.end_key
        done, active, throttled_total = checkpoint.done, checkpoint.active_seconds, checkpoint.throttled_seconds
        inserted = 0  # by this orchestrator; a resumed run counts from its restart
        while last < end:
            throttled = await self._wait_for_headroom(plan)
            THROTTLED.labels(change).inc(throttled)
            started = time.perf_counter()
            try:
                async with self.conn.transaction():
                    upper, covered, copied = await target.copy_batch(self.conn, names, columns, last, end,
                                                                     plan.batch.size)
                    seconds = time.perf_counter() - started
                    await state.advance_checkpoint(self.conn, change, last, upper, covered, seconds, throttled)
            except asyncpg.exceptions.DeadlockDetectedError:
                # A writer's multi-statement transaction crossed the fence; the batch rolled back whole, so the
                # checkpoint still points before it: take it again.
                log.warning("backfill_batch_retried", change=change, after_key=last)
                continue
            last, done, active, throttled_total = upper, done + covered, active + seconds, throttled_total + throttled
            inserted += copied
            ROWS_COPIED.labels(change).inc(copied)
            progress = Progress(done, checkpoint.total, active)
            BACKFILL_DONE.labels(change).set(progress.share)
            if self.on_progress is not None:
                self.on_progress(progress)
            log.info("backfill_progress", change=change, progress=progress.describe(), last_key=last)
            if self.settings.backfill_pause_seconds:
                await asyncio.sleep(self.settings.backfill_pause_seconds)
        final = Progress(done, checkpoint.total, active)
        await state.save_result(self.conn, change, "backfill", {
            "rows": done, "total_at_start": checkpoint.total, "inserted_by_this_run": inserted,
            "active_seconds": round(active, 3),
            "rows_per_second": round(final.rows_per_second, 1), "throttled_seconds": round(throttled_total, 3),
            "batch_size": plan.batch.size})
        return f"copied {final.describe()}"

    async def _shadow_read(self, plan: Plan, names: Names, change: str) -> str:
        columns = await target.columns_of(self.conn, names.blue)
        lo_b, hi_b, _ = await target.key_bounds(self.conn, names.blue, names.key)
        lo_g, hi_g, _ = await target.key_bounds(self.conn, names.green, names.key)
        lo, hi = min(lo_b, lo_g), max(hi_b, hi_g)
        compared = bad = 0
        listed: list[dict[str, object]] = []
        started = time.perf_counter()
        cursor, chunk = lo, plan.shadow_read.chunk
        while cursor < hi:
            upper = min(cursor + chunk, hi)
            n, wrong, found = await target.compare_chunk(self.conn, names, columns, cursor, upper,
                                                         plan.entity.selector, plan.shadow_read.sample,
                                                         plan.shadow_read.max_listed - len(listed) or 1)
            compared, bad = compared + n, bad + wrong
            listed += found[: max(plan.shadow_read.max_listed - len(listed), 0)]
            cursor = upper
        seconds = time.perf_counter() - started
        body: dict[str, Any] = {"compared": compared, "mismatches": bad, "listed": listed,
                                "sample": plan.shadow_read.sample, "seconds": round(seconds, 3),
                                "entities_per_second": round(compared / seconds, 1) if seconds > 0 else 0.0}
        await state.save_result(self.conn, change, "shadow-read", body)
        if bad:
            raise RunFailed(f"shadow read found {bad} mismatches in {compared} entities, first: {listed[:5]}")
        return f"{compared} entities equal in blue and green"

    async def _baseline(self, plan: Plan, names: Names, change: str) -> str:
        if plan.aca is None:
            return "no canary analysis configured"
        await health.ensure_pg_stat_statements(self.conn)
        rates_before = await health.database_rollbacks(self.conn)
        found, problems = await canary.sample_windows(self.conn, plan.aca, self.settings.prometheus_url)
        rates_after = await health.database_rollbacks(self.conn)
        await state.clear_samples(self.conn, change, "baseline")
        for metric, values in found.items():
            await state.add_samples(self.conn, change, metric, "baseline", values)
        await state.save_result(self.conn, change, "baseline", {
            "problems": problems, "error_rate": _error_rate(rates_before, rates_after),
            "samples": {k: len(v) for k, v in found.items()}})
        return f"blue baseline sampled over {plan.aca.windows} windows"

    async def _cutover(self, plan: Plan, names: Names, change: str) -> str:
        row = await state.load_change(self.conn, change)
        assert row is not None
        if row.cutover_committed:
            return "cutover had committed before a restart"
        columns = await target.columns_of(self.conn, names.blue)
        await target.enable_reverse(self.conn, names, plan.cutover.lock_timeout_ms)
        timing = await target.switch_view(
            self.conn, names, columns, to_green=True, lock_timeout_ms=plan.cutover.lock_timeout_ms,
            attempts=plan.cutover.attempts,
            record=f"UPDATE {SCHEMA}.changes SET cutover_committed = true, updated_at = now() WHERE change = $1",
            record_args=(change,))
        CUTOVER_LOCK.labels(change).set(timing.total_ms)
        body = {"duration_ms": round(timing.total_ms, 3), "lock_wait_ms": round(timing.lock_wait_ms, 3),
                "lock_hold_ms": round(timing.lock_hold_ms, 3), "attempts": timing.attempts,
                "view": names.view, "now_serving": names.green}
        if plan.kubernetes.enabled:
            if not self.settings.kubernetes_switch:
                body["kubernetes"] = "plan asks for a Service switch but IG_KUBERNETES_SWITCH is off: skipped"
            else:
                from ig_migration.adapters.kubernetes_switch import switch_selector

                previous = await switch_selector(plan.kubernetes, plan.green.version)
                body["kubernetes"] = {"service": plan.kubernetes.service, "from": previous,
                                      "to": plan.green.version}
        await state.save_result(self.conn, change, "cutover", body)
        return f"{names.view} now reads {names.green}; lock held {timing.total_ms:.1f} ms"

    async def _aca(self, plan: Plan, names: Names, change: str) -> str:
        if plan.aca is None:
            await state.save_result(self.conn, change, "aca", {"score": 1.0, "passed": True, "threshold": 0.0,
                                                               "metrics": [], "detail": "not configured"})
            return "no canary analysis configured"
        aca = plan.aca
        rates_before = await health.database_rollbacks(self.conn)
        found, problems = await canary.sample_windows(self.conn, aca, self.settings.prometheus_url)
        probes = await canary.probe_both(self.conn, plan, aca)
        rates_after = await health.database_rollbacks(self.conn)
        judgements = []
        for metric in aca.metrics:
            if metric.name in probes:
                baseline, canary_values = probes[metric.name]
            else:
                baseline = await state.samples(self.conn, change, metric.name, "baseline")
                canary_values = found.get(metric.name, [])
            await state.add_samples(self.conn, change, metric.name, "canary", canary_values)
            judgements.append(aca_judge.judge_metric(metric, baseline, canary_values, aca.confidence))
        result = aca_judge.score(judgements, aca.threshold)
        ACA_SCORE.labels(change).set(result.score)
        await state.save_result(self.conn, change, "aca", {
            "score": result.score, "raw_score": result.raw_score, "threshold": result.threshold,
            "passed": result.passed, "vetoed_by": list(result.vetoed_by), "problems": problems,
            "error_rate": _error_rate(rates_before, rates_after),
            "metrics": [{"metric": j.metric, "verdict": j.verdict.value, "passed": j.passed, "critical": j.critical,
                         "p_value": _finite(j.p_value), "baseline_median": _finite(j.baseline_median),
                         "canary_median": _finite(j.canary_median), "baseline_n": j.baseline_n, "canary_n": j.canary_n,
                         "reason": j.reason} for j in result.metrics]})
        return f"score {result.score:.2f} (threshold {aca.threshold}); vetoed by {list(result.vetoed_by) or 'none'}"

    async def _verify(self, plan: Plan, names: Names, change: str) -> str:
        columns = await target.columns_of(self.conn, names.blue)
        blue, green = await target.fingerprints(self.conn, [names.blue, names.green], columns, names.key)
        await state.save_result(self.conn, change, "verify", {
            "blue_rows": blue.rows, "green_rows": green.rows, "blue_checksum": blue.checksum,
            "green_checksum": green.checksum, "equal": blue == green})
        if blue != green:
            raise RunFailed(f"green ({green.rows} rows) diverged from blue ({blue.rows} rows) after cutover")
        return f"{green.rows} rows, checksums equal"

    async def _contract(self, plan: Plan, names: Names, change: str) -> str:
        if not plan.contract.drop_blue:
            await state.save_result(self.conn, change, "contract", {"dropped_blue": False})
            return f"blue {names.blue} kept and kept in sync (reverse dual-write) for backout"
        row = await state.load_change(self.conn, change)
        cutover_at = await self.conn.fetchval(f"SELECT at FROM {SCHEMA}.results WHERE change = $1 AND "
                                              f"kind = 'cutover'", change)
        age = float(await self.conn.fetchval("SELECT extract(epoch FROM now() - $1::timestamptz)", cutover_at))
        if row is None or age < plan.contract.grace_seconds:
            raise NotYet(f"contract waits for the grace period: {age:.0f}s of {plan.contract.grace_seconds:.0f}s "
                            f"since cutover; run again later")
        await target.remove_dual_write(self.conn, names, plan.cutover.lock_timeout_ms)
        sequences = await target.hand_over_sequences(self.conn, names.blue, names.green)
        await target.drop_table(self.conn, names.blue, plan.cutover.lock_timeout_ms)
        await state.save_result(self.conn, change, "contract", {"dropped_blue": True, "grace_seconds": age,
                                                                "sequences_handed_over": sequences})
        return f"blue {names.blue} dropped after {age:.0f}s grace"

    async def _complete(self, plan: Plan, names: Names, change: str) -> str:
        return "change completed"


def _error_rate(before: tuple[int, int], after: tuple[int, int]) -> float:
    commits, rollbacks = after[0] - before[0], after[1] - before[1]
    return round(rollbacks / (commits + rollbacks), 6) if commits + rollbacks > 0 else 0.0


def _finite(value: float) -> float | None:
    """JSON (and jsonb) has no NaN; a statistic that could not be computed is null."""
    return value if math.isfinite(value) else None
