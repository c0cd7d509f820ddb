"""The evaluation loop: Prometheus -> burn reports -> throttle decisions -> PostgreSQL (+ outbox) -> metrics.

One replica evaluates at a time (a PostgreSQL advisory lock held for the process life); every replica serves
reads. A failed Prometheus query marks every SLO stale and changes nothing; the state is recovered from PostgreSQL
on start, so a restart neither repeats nor loses a transition.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
import structlog
from ig_common.lifecycle import wait_at_most
from opentelemetry import trace
from prometheus_client import Counter, Gauge, Histogram

from ig_burn.config_loader import BurnConfig
from ig_burn.domain.burn import BurnReport, WindowScale, compute_report, windows_for
from ig_burn.domain.queries import Batch, Term, batch_terms, terms_for
from ig_burn.domain.recording import RECORDED_SELECTOR, Recorded, read_recorded, rule_revision
from ig_burn.domain.throttle import THROTTLED, ThrottleState, decide, initial_state
from ig_burn.prometheus import PrometheusClient, PrometheusUnavailable
from ig_burn.store.flags import FLAG_CHANGES, FlagStore
from ig_burn.store.throttles import AppliedTransition, ThrottleStore

log = structlog.get_logger(__name__)
tracer = trace.get_tracer(__name__)

BUDGET = Gauge("ig_burn_budget_consumed_ratio", "Share of the error budget consumed", ["slo", "service", "period"])
RATE = Gauge("ig_burn_rate", "Burn rate over a window (1 = exactly on budget)", ["slo", "service", "window"])
THROTTLE = Gauge("ig_burn_throttled", "1 while the SLO's auto-throttle is engaged", ["slo", "service"])
ALERT = Gauge("ig_burn_alert_level", "0 none, 1 warn (> warn threshold), 2 page (> page threshold)", ["slo", "service"])
STALE = Gauge("ig_burn_stale", "1 while the SLO's burn could not be measured (last state kept)", ["slo", "service"])
EVALUATIONS = Counter("ig_burn_evaluations_total", "Evaluation ticks, by outcome", ["outcome"])
TRANSITIONS = Counter("ig_burn_transitions_total", "Throttle transitions committed", ["to_state"])
TICK_SECONDS = Histogram("ig_burn_evaluation_seconds", "Time of one evaluation tick",
                         buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30))
QUERIES_PER_TICK = Gauge("ig_burn_queries_per_tick", "PromQL queries the last tick sent")
RECORDED_SLOS = Gauge("ig_burn_recorded_slos", "SLOs whose error ratios the last tick read from recording rules")
WINDOW_SCALE = Gauge("ig_burn_window_scale", "Every window is divided by this: 1 = production windows, more = a "
                     "simulation (the demo profile's 86400: 30 d lasts 30 s), whose budgets are not production's")
_ALERT_LEVELS = {"none": 0, "warn": 1, "page": 2}


@dataclass
class Snapshot:
    """What reads (gRPC, /get-burn, the HTML page) see: the last evaluation."""

    reports: dict[str, BurnReport] = field(default_factory=dict)
    states: dict[str, ThrottleState] = field(default_factory=dict)
    stale: bool = True
    error: str = ""
    evaluated_at: datetime | None = None
    history: dict[str, deque[tuple[datetime, float]]] = field(default_factory=dict)


@dataclass(frozen=True)
class TickResult:
    seconds: float
    queries: int
    slos: int
    stale: bool
    transitions: tuple[AppliedTransition, ...]
    recorded_slos: int = 0


class BurnEngine:
    def __init__(self, config: BurnConfig, prometheus: PrometheusClient, pool: asyncpg.Pool, schema: str, *,
                 scale: WindowScale, batch_size: int, external_url: str,
                 on_committed: Callable[[], Awaitable[None]] | None = None,
                 recording_rules_max_age: float | None = None) -> None:
        self.config = config
        self.prometheus = prometheus
        self.pool = pool
        self.flags = FlagStore(schema)
        self.store = ThrottleStore(schema, self.flags, external_url)
        self.slos = {s.name: s for s in config.slos}
        self.policies = {p.slo: p for p in config.policies}
        self.batch_size = batch_size
        # Shown on every page and report (a simulation's burn must never pass for production's).
        self.scale = scale
        WINDOW_SCALE.set(scale.divisor)
        self.terms: dict[str, tuple[Term, ...]] = {s.name: terms_for(s, scale) for s in config.slos}
        # None: never look for recording rules. Otherwise the oldest recorded sample (seconds) a tick accepts.
        self.recording_rules_max_age = recording_rules_max_age
        self.revisions = {s.name: rule_revision(s, scale) for s in config.slos}
        self._planned: tuple[frozenset[str], list[Batch]] | None = None
        self.snapshot = Snapshot()
        self._children: dict[tuple[int, tuple[str, ...]], Gauge] = {}
        self._on_committed = on_committed
        self._leader: asyncpg.pool.PoolConnectionProxy | None = None
        self._lock_key = f"ig-burn-engine:{schema}"

    async def start(self) -> None:
        """Recover throttle states and make sure every flag a policy drives exists (at its normal value)."""
        async with self.pool.acquire() as conn, conn.transaction():
            self.snapshot.states = await self.store.load_states(conn)
            for policy in self.config.policies:
                for action in policy.actions:
                    if await self.flags.get(conn, action.flag) is None:
                        await self.flags.set(conn, action.flag, action.normal, pinned=False, changed_by="ig-burn",
                                             reason=f"created by throttle policy {policy.name}")
        log.info("burn_engine_started", slos=len(self.slos), policies=len(self.policies),
                 recording_rules=self.recording_rules_max_age is not None,
                 queries_per_tick_without_rules=len(batch_terms([t for ts in self.terms.values() for t in ts],
                                                                self.batch_size)),
                 recovered_states=len(self.snapshot.states))

    async def run(self, stop: asyncio.Event, interval: float) -> None:
        try:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    await self.tick()
                except asyncio.CancelledError:
                    raise
                except Exception as error:  # a bad tick must not end the loop; the next one retries
                    EVALUATIONS.labels("error").inc()
                    log.exception("burn_tick_failed", error=repr(error))
                await wait_at_most(stop, max(0.0, interval - (time.monotonic() - started)))
        finally:
            await self.close()

    async def close(self) -> None:
        """Give the evaluator lock back (another replica takes over at its next tick)."""
        if self._leader is not None:
            leader, self._leader = self._leader, None
            await self.pool.release(leader)

    async def _is_leader(self) -> bool:
        if self._leader is not None and not self._leader.is_closed():
            return True
        conn = await self.pool.acquire()
        # Held for the process life; releasing the connection (asyncpg resets it) gives the lock up.
        if await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", self._lock_key):
            self._leader = conn
            return True
        await self.pool.release(conn)
        return False

    async def tick(self) -> TickResult:
        started = time.perf_counter()
        now = datetime.now(UTC)
        with tracer.start_as_current_span("burn.tick") as span:
            span.set_attribute("ig.burn.slos", len(self.slos))
            queries, recorded = 0, 0
            try:
                ratios, queries, recorded = await self._error_ratios()
                reports: dict[str, BurnReport] | None = {
                    name: compute_report(slo, {w: ratios.get((name, w)) for w in windows_for(slo)})
                    for name, slo in self.slos.items()}
                self.snapshot.error = ""
            except PrometheusUnavailable as error:
                reports = None
                self.snapshot.error = str(error)
                log.warning("burn_stale_prometheus_unavailable", error=str(error))
            applied = await self._decide(reports, now) if await self._is_leader() else ()
            span.set_attribute("ig.burn.stale", reports is None)
            span.set_attribute("ig.burn.queries", queries)
            span.set_attribute("ig.burn.recorded_slos", recorded)
        self._publish(reports, now)
        seconds = time.perf_counter() - started
        TICK_SECONDS.observe(seconds)
        QUERIES_PER_TICK.set(queries)
        RECORDED_SLOS.set(recorded)
        EVALUATIONS.labels("stale" if reports is None else "ok").inc()
        return TickResult(seconds, queries, len(self.slos), reports is None, tuple(applied), recorded)

    def _direct_batches(self, covered: frozenset[str]) -> list[Batch]:
        """Batches for the SLOs the rules do not cover; the same set from tick to tick reuses the same batches."""
        if self._planned is None or self._planned[0] != covered:
            terms = [t for name, terms in self.terms.items() if name not in covered for t in terms]
            self._planned = (covered, batch_terms(terms, self.batch_size))
        return self._planned[1]

    async def _error_ratios(self) -> tuple[dict[tuple[str, int], float], int, int]:
        """Every (SLO, window) ratio at one timestamp: recorded by the rules where Prometheus has them (one
        query for all), the rest queried directly in batches. Returns (ratios, queries sent, SLOs from rules)."""
        at = time.time()
        recorded = Recorded({}, frozenset())
        if self.recording_rules_max_age is not None:
            samples = await self.prometheus.instant(RECORDED_SELECTOR, at,
                                                    lookback_seconds=self.recording_rules_max_age)
            recorded = read_recorded(samples, self.revisions)
        direct = self._direct_batches(recorded.covered)
        ratios = await self.prometheus.error_ratios(direct, at) if direct else {}
        ratios.update(recorded.ratios)
        return ratios, len(direct) + (self.recording_rules_max_age is not None), len(recorded.covered)

    async def _decide(self, reports: dict[str, BurnReport] | None, now: datetime) -> list[AppliedTransition]:
        observed: list[tuple[ThrottleState, str]] = []
        moves = []
        for slo_name, policy in self.policies.items():
            current = self.snapshot.states.get(slo_name) or initial_state(slo_name, now)
            decision = decide(policy, current, None if reports is None else reports.get(slo_name), now)
            if decision.transition is None:
                observed.append((decision.state, self.slos[slo_name].service))
                self.snapshot.states[slo_name] = decision.state
            else:
                moves.append(decision)
        applied: list[AppliedTransition] = []
        async with self.pool.acquire() as conn:
            await self.store.save_states(conn, observed)
            for decision in moves:
                assert decision.transition is not None
                service = self.slos[decision.transition.slo].service
                severity = "page" if decision.state.alert == "page" else "warning"
                async with conn.transaction():
                    done = await self.store.apply_transition(conn, decision.state, decision.transition, service,
                                                             severity)
                if done is None:  # the stored state had moved already (restart or another replica): reload it
                    self.snapshot.states.update(await self.store.load_states(conn))
                    continue
                self.snapshot.states[decision.state.slo] = decision.state
                applied.append(done)
                TRANSITIONS.labels(decision.state.state).inc()
                for key in done.changed_flags:
                    FLAG_CHANGES.labels(key, "automation").inc()
                log.warning("burn_throttle_transition", slo=done.transition.slo, to_state=done.transition.to_state,
                            reason=done.transition.reason, flags=list(done.changed_flags),
                            pinned_left_alone=[s.key for s in done.skipped], incident=done.incident_id)
                for skipped in done.skipped:
                    log.warning("burn_flag_pinned_respected", flag=skipped.key, wanted=skipped.wanted,
                                reason=skipped.reason)
        if applied and self._on_committed is not None:
            await self._on_committed()
        return applied

    def _gauge(self, gauge: Gauge, *labels: str) -> Gauge:
        """The labelled child, looked up once: ``labels()`` per gauge per SLO was a third of a 1,000-SLO tick's
        Python time."""
        key = (id(gauge), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = gauge.labels(*labels)
        return child

    def _publish(self, reports: dict[str, BurnReport] | None, now: datetime) -> None:
        snapshot = self.snapshot
        snapshot.stale = reports is None
        snapshot.evaluated_at = now
        if reports is not None:
            snapshot.reports = reports
        for name, slo in self.slos.items():
            report = snapshot.reports.get(name)
            stale = reports is None or report is None or not report.complete
            self._gauge(STALE, name, slo.service).set(1 if stale else 0)
            if report is None:
                continue
            if reports is not None:
                self._gauge(BUDGET, name, slo.service, "month").set(report.monthly_budget_consumed)
                self._gauge(BUDGET, name, slo.service, "week").set(report.weekly_budget_consumed)
                for rate in report.burn_rates:
                    self._gauge(RATE, name, slo.service, rate.window).set(rate.rate)
                snapshot.history.setdefault(name, deque(maxlen=240)).append((now, report.monthly_budget_consumed))
            state = snapshot.states.get(name)
            if state is not None:
                self._gauge(THROTTLE, name, slo.service).set(1 if state.state == THROTTLED else 0)
                self._gauge(ALERT, name, slo.service).set(_ALERT_LEVELS[state.alert])
