"""Automated canary analysis, Kayenta style: a Mann-Whitney U test per metric classifies the canary (green) against
the baseline (blue) as pass / high / low; the score is the passing share and a failing critical metric vetoes."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from scipy.stats import mannwhitneyu  # type: ignore[import-untyped]  # scipy ships no stubs

from ig_migration.domain.plan import AcaMetric, Direction


class Verdict(StrEnum):
    PASS = "pass"
    HIGH = "high"
    LOW = "low"
    NODATA = "nodata"


@dataclass(frozen=True)
class MetricJudgement:
    metric: str
    verdict: Verdict
    passed: bool
    critical: bool
    p_value: float
    baseline_median: float
    canary_median: float
    baseline_n: int
    canary_n: int
    reason: str


@dataclass(frozen=True)
class AcaResult:
    score: float
    raw_score: float
    threshold: float
    vetoed_by: tuple[str, ...]
    metrics: tuple[MetricJudgement, ...]

    @property
    def passed(self) -> bool:
        return self.score >= self.threshold


MIN_SAMPLES = 3


def judge_metric(metric: AcaMetric, baseline: Sequence[float], canary: Sequence[float],
                 confidence: float) -> MetricJudgement:
    """Classify one metric. A difference fails only when it is significant, in the harmful direction and larger
    than both the relative tolerance and the absolute floor (Kayenta's effect-size guard against noise)."""
    b_med = statistics.median(baseline) if baseline else float("nan")
    c_med = statistics.median(canary) if canary else float("nan")

    def judgement(verdict: Verdict, passed: bool, p_value: float, reason: str) -> MetricJudgement:
        return MetricJudgement(metric.name, verdict, passed, metric.critical, p_value, b_med, c_med,
                               len(baseline), len(canary), reason)

    if len(baseline) < MIN_SAMPLES or len(canary) < MIN_SAMPLES:
        # Fail closed: a canary we could not measure is not a healthy canary.
        return judgement(Verdict.NODATA, False, float("nan"),
                         f"need >= {MIN_SAMPLES} samples per side, got {len(baseline)}/{len(canary)}")
    if len(set(baseline) | set(canary)) == 1:
        return judgement(Verdict.PASS, True, 1.0, "identical constant samples")
    p_value = float(mannwhitneyu(canary, baseline, alternative="two-sided").pvalue)
    alpha = 1.0 - confidence
    if p_value >= alpha:
        return judgement(Verdict.PASS, True, p_value, f"no significant difference (p={p_value:.3g} >= {alpha:.3g})")
    verdict = Verdict.HIGH if c_med > b_med else Verdict.LOW
    harmful = (metric.direction is Direction.EITHER
               or (metric.direction is Direction.INCREASE and verdict is Verdict.HIGH)
               or (metric.direction is Direction.DECREASE and verdict is Verdict.LOW))
    if not harmful:
        return judgement(verdict, True, p_value, f"significant but in the harmless direction ({verdict.value})")
    change = abs(c_med - b_med)
    allowed = max(abs(b_med) * metric.tolerance, metric.floor)
    if change <= allowed:
        return judgement(verdict, True, p_value, f"significant but within tolerance ({change:.4g} <= {allowed:.4g})")
    return judgement(verdict, False, p_value,
                     f"{verdict.value}: median {b_med:.4g} -> {c_med:.4g} (p={p_value:.3g}, allowed {allowed:.4g})")


def score(judgements: Sequence[MetricJudgement], threshold: float) -> AcaResult:
    if not judgements:
        raise ValueError("canary analysis needs at least one metric")
    raw = sum(1 for j in judgements if j.passed) / len(judgements)
    vetoes = tuple(j.metric for j in judgements if j.critical and not j.passed)
    return AcaResult(score=0.0 if vetoes else raw, raw_score=raw, threshold=threshold, vetoed_by=vetoes,
                     metrics=tuple(judgements))
