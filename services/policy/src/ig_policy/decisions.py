"""Deciding: ask the engine, stamp the answer (id, revision, time), hand it to the log, count it.

The API adapters (gRPC, AuthZEN) validate and translate; this is what they share.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from opentelemetry import trace
from prometheus_client import Counter, Histogram

from ig_policy.breakglass import BreakGlassVerifier, count_use
from ig_policy.clock import system_clock
from ig_policy.domain.clock import Clock, time_errors
from ig_policy.domain.masking import sensitive_values_of
from ig_policy.domain.model import Decision, DecisionRequest, Verdict
from ig_policy.domain.validation import FieldError

DEFAULT_SKEW = timedelta(minutes=5)

DECISIONS = Counter("ig_policy_decisions_total", "Decisions made, by result and primary rule", ["result", "rule_id"])
DECISION_LATENCY = Histogram(
    "ig_policy_decision_seconds", "Time to decide, engine included",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25),
)

REGION_CLAIMS_OVERRIDDEN = Counter(
    "ig_policy_region_claims_overridden_total",
    "Requests whose context.region differed from the serving region (decided on the serving region)")

tracer = trace.get_tracer("ig_policy")
# The counter's children, bound once per (result, rule id): .labels() validates and hashes its labels on every
# call. Rule ids come from the loaded policy, so this stays as small as the policy's set of rules.
_DECISION_COUNTERS: dict[tuple[str, str], Any] = {}


def _count_decision(result: str, rule_id: str) -> None:
    child = _DECISION_COUNTERS.get((result, rule_id))
    if child is None:
        child = _DECISION_COUNTERS[(result, rule_id)] = DECISIONS.labels(result, rule_id)
    child.inc()


class Engine(Protocol):
    revision: str

    async def evaluate(self, policy_input: dict[str, Any]) -> Verdict: ...


class DecisionSink(Protocol):
    async def record(self, policy_input: Any, decision: Decision) -> None:
        """Back once the decision is recorded durably enough to answer; DecisionLogUnavailable otherwise."""


def new_decision_id() -> str:
    return f"dec_{uuid.uuid4().hex}"


class DecisionService:
    """``region``: the region this service serves from (IG_REGION). Residency is judged on it, never on the
    ``context.region`` a caller sends: a client in region-b cannot reach region-a-pinned data by claiming region-a."""

    def __init__(self, engine: Engine, sink: DecisionSink, *, region: str, clock: Clock = system_clock,
                 skew: timedelta = DEFAULT_SKEW, break_glass: BreakGlassVerifier | None = None) -> None:
        self._engine = engine
        self._sink = sink
        self._region = region
        self._clock = clock
        self._skew = skew
        # Without approvers no grant verifies: a break-glass request is then always denied (fail closed).
        self._break_glass = break_glass or BreakGlassVerifier()

    def now(self) -> datetime:
        return self._clock()

    def time_errors(self, request: DecisionRequest, prefix: str = "") -> list[FieldError]:
        """The sent ``context.time`` must be within the skew of the server's clock (checked before deciding)."""
        return time_errors(request.context.time, self._clock(), self._skew, prefix + "context.time")

    @property
    def revision(self) -> str:
        return self._engine.revision

    async def decide(self, request: DecisionRequest) -> Decision:
        # The moment judged is the service's (the test clock in tests); evaluated_at stays the wall clock, which
        # the decision log is ordered and queried by.
        now = self._clock()
        if request.context.region != self._region:
            REGION_CLAIMS_OVERRIDDEN.inc()
        # The grant is verified at the same moment the policy judges; the Rego sees only what verified.
        glass = self._break_glass.check(request, now) if request.context.break_glass is not None else None
        policy_input = request.to_policy_input(now, self._region, glass.policy_facts if glass is not None else None)
        started = time.perf_counter()
        verdict = await self._engine.evaluate(policy_input)
        elapsed = time.perf_counter() - started
        decision = Decision(
            decision_id=new_decision_id(), verdict=verdict, policy_revision=self._engine.revision,
            evaluated_at=datetime.now(UTC), latency_ms=elapsed * 1000,
            sensitive_values=sensitive_values_of(policy_input),
        )
        _count_decision(verdict.result.value, verdict.rule_id)
        DECISION_LATENCY.observe(elapsed)
        if glass is not None:
            count_use(glass, verdict.result)
        # Answered only once its record is handed over (ig_policy.store.wal): a decision the log cannot take is
        # refused (DecisionLogUnavailable -> UNAVAILABLE), never answered unrecorded.
        await self._sink.record(policy_input, decision)
        return decision

    async def decide_all(self, requests: Sequence[DecisionRequest]) -> list[Decision]:
        """Answers in the order asked; the engine bounds how many run at once."""
        return list(await asyncio.gather(*(self.decide(r) for r in requests)))


def annotate_span(decision: Decision) -> None:
    """The attributes security tooling searches traces by."""
    span = trace.get_current_span()
    span.set_attribute("ig.decision_id", decision.decision_id)
    span.set_attribute("ig.rule_id", decision.rule_id)
    span.set_attribute("ig.result", decision.result.value)
    span.set_attribute("ig.policy_revision", decision.policy_revision)
