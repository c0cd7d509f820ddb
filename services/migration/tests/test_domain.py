"""Pure logic: the phase machine, progress arithmetic, gates, and the Kayenta-style judge."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ig_migration.domain.aca import Verdict, judge_metric, score
from ig_migration.domain.gates import Bound, GateResult, all_passed, storage_gate
from ig_migration.domain.phases import FORWARD, Phase, PhaseError, next_phase, parse_phase, remaining
from ig_migration.domain.plan import AcaMetric, Direction, MetricSource
from ig_migration.domain.progress import Progress


def test_phases_run_in_order_and_resume_after_the_last_done() -> None:
    assert remaining(Phase.SUBMITTED)[0] is Phase.PREFLIGHT
    assert remaining(Phase.BACKFILL, until=Phase.CUTOVER) == [Phase.SHADOW_READ, Phase.BASELINE, Phase.CUTOVER]
    assert remaining(Phase.COMPLETED) == [] and remaining(Phase.BACKED_OUT) == []
    assert next_phase(Phase.CUTOVER) is Phase.ACA
    with pytest.raises(PhaseError):
        next_phase(Phase.COMPLETED)
    with pytest.raises(PhaseError):
        parse_phase("teleport")
    assert len(set(FORWARD)) == len(FORWARD)


def test_progress_reports_rate_and_eta() -> None:
    progress = Progress(done=25_000, total=100_000, elapsed_seconds=5.0)
    assert progress.rows_per_second == 5000
    assert progress.eta_seconds == 15.0
    assert "25000/100000 (25.0%)" in progress.describe()
    assert math.isinf(Progress(0, 10, 0).eta_seconds)
    assert Progress(10, 10, 1).eta_seconds == 0


@pytest.mark.parametrize(("measured", "limit", "bound", "passed"), [
    (3, 5, Bound.AT_MOST, True), (5, 5, Bound.AT_MOST, True), (6, 5, Bound.AT_MOST, False),
    (0.3, 0.2, Bound.AT_LEAST, True), (0.1, 0.2, Bound.AT_LEAST, False),
])
def test_gate_compares_measured_with_limit(measured: float, limit: float, bound: Bound, passed: bool) -> None:
    gate = GateResult("g", measured, limit, bound, "")
    assert gate.passed is passed
    assert ("pass" if passed else "FAIL") in gate.describe()


def test_storage_gate_needs_the_safety_factor() -> None:
    assert storage_gate(100, 250, 2.0, "").passed
    assert not storage_gate(100, 150, 2.0, "").passed
    assert not all_passed([storage_gate(100, 150, 2.0, ""), storage_gate(1, 10, 2.0, "")])


def metric(direction: Direction = Direction.INCREASE, critical: bool = False, tolerance: float = 0.2,
           floor: float = 0.0) -> AcaMetric:
    return AcaMetric(name="latency_ms", source=MetricSource.ERROR_RATE, direction=direction, critical=critical,
                     tolerance=tolerance, floor=floor)


BASE = [10.0, 10.5, 9.8, 10.2, 10.1, 9.9, 10.3, 10.0, 9.7, 10.4]


@pytest.mark.parametrize(("canary", "direction", "verdict", "passed"), [
    ([v * 3 for v in BASE], Direction.INCREASE, Verdict.HIGH, False),
    ([v / 3 for v in BASE], Direction.INCREASE, Verdict.LOW, True),
    ([v / 3 for v in BASE], Direction.DECREASE, Verdict.LOW, False),
    ([v * 3 for v in BASE], Direction.EITHER, Verdict.HIGH, False),
    ([v * 1.1 for v in BASE], Direction.INCREASE, Verdict.HIGH, True),   # significant but within 20 % tolerance
    (BASE[::-1], Direction.INCREASE, Verdict.PASS, True),
    ([], Direction.INCREASE, Verdict.NODATA, False),
])
def test_judge_classifies_like_kayenta(canary: list[float], direction: Direction, verdict: Verdict,
                                       passed: bool) -> None:
    judgement = judge_metric(metric(direction), BASE, canary, confidence=0.95)
    assert (judgement.verdict, judgement.passed) == (verdict, passed), judgement.reason


def test_floor_absorbs_small_absolute_differences() -> None:
    judgement = judge_metric(metric(tolerance=0.0, floor=50.0), BASE, [v * 3 for v in BASE], 0.95)
    assert judgement.verdict is Verdict.HIGH and judgement.passed


def test_score_is_the_passing_share_and_critical_failures_veto() -> None:
    good = judge_metric(metric(), BASE, BASE, 0.95)
    bad = judge_metric(metric(), BASE, [v * 3 for v in BASE], 0.95)
    bad_critical = judge_metric(metric(critical=True), BASE, [v * 3 for v in BASE], 0.95)
    result = score([good, good, good, bad], threshold=0.9)
    assert result.score == 0.75 and not result.passed and result.vetoed_by == ()
    vetoed = score([good] * 9 + [bad_critical], threshold=0.5)
    assert vetoed.raw_score == 0.9 and vetoed.score == 0.0 and vetoed.vetoed_by == ("latency_ms",)
    assert score([good] * 4, threshold=0.9).passed


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=0.1, max_value=100, allow_nan=False), min_size=8, max_size=40),
       st.floats(min_value=20, max_value=1000))
def test_a_far_slower_canary_always_fails(baseline: list[float], factor: float) -> None:
    # Every canary sample exceeds every baseline sample by a wide margin: significant, harmful, beyond tolerance.
    canary = [max(baseline) * factor + v for v in baseline]
    judgement = judge_metric(metric(tolerance=1.0), baseline, canary, 0.95)
    assert judgement.verdict is Verdict.HIGH and not judgement.passed


@settings(max_examples=60, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=20))
def test_score_stays_between_zero_and_one(outcomes: list[bool]) -> None:
    judgements = [judge_metric(metric(), BASE, BASE if ok else [v * 5 for v in BASE], 0.95) for ok in outcomes]
    result = score(judgements, 0.9)
    assert 0.0 <= result.score <= 1.0
    assert result.score == pytest.approx(sum(outcomes) / len(outcomes))
