"""Burn arithmetic and the batched PromQL plan."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ig_burn.domain.burn import ALERT_WINDOWS, WindowScale, compute_report, format_duration, windows_for
from ig_burn.domain.queries import counter_rate, error_ratio_promql, plan_batches, union
from ig_burn.domain.slo import RatioIndicator, Slo

SLO = Slo("api-availability", "api", 0.999, RatioIndicator(total="req_total", bad='req_total{code="500"}'),
          30 * 86400)


def ratios(value: float | None) -> dict[int, float | None]:
    return dict.fromkeys(windows_for(SLO), value)


def test_sre_workbook_windows_and_factors_are_the_defaults() -> None:
    assert [(format_duration(a.long), format_duration(a.short), a.factor) for a in ALERT_WINDOWS] == [
        ("1h", "5m", 14.4), ("6h", "30m", 6.0), ("1d", "2h", 3.0), ("3d", "6h", 1.0)]
    assert set(windows_for(SLO)) == {30 * 86400, 7 * 86400, 3600, 300, 21600, 1800, 86400, 7200, 3 * 86400}


def test_budget_consumed_is_error_ratio_over_allowed_ratio() -> None:
    values = ratios(0.0)
    values[30 * 86400] = 0.0002
    values[7 * 86400] = 0.0005
    report = compute_report(SLO, values)
    assert report.monthly_budget_consumed == pytest.approx(0.2)
    assert report.weekly_budget_consumed == pytest.approx(0.5)
    assert report.remaining_budget == pytest.approx(0.8)
    assert report.complete and not report.page


def test_page_needs_both_long_and_short_window_above_the_factor() -> None:
    values = ratios(0.0)
    values[3600] = 0.0150  # burn 15 > 14.4
    assert not compute_report(SLO, values).page
    values[300] = 0.0150
    report = compute_report(SLO, values)
    assert report.page
    assert [a.firing for a in report.alerts] == [True, False, False, False]
    assert dict((r.window, r.rate) for r in report.burn_rates)["1h"] == pytest.approx(15.0)


@pytest.mark.parametrize("missing", [None, math.nan, -1.0])
def test_missing_nan_or_negative_data_marks_the_report_incomplete(missing: float | None) -> None:
    values = ratios(0.001)
    values[3600] = missing
    report = compute_report(SLO, values)
    assert not report.complete and report.missing_windows == ("1h",)


@given(st.floats(min_value=0, max_value=1), st.floats(min_value=0.5, max_value=0.99999))
def test_burn_is_monotonic_in_error_ratio_and_never_negative(ratio: float, objective: float) -> None:
    slo = Slo("s", "svc", objective, SLO.indicator, 30 * 86400)
    low = compute_report(slo, dict.fromkeys(windows_for(slo), ratio / 2))
    high = compute_report(slo, dict.fromkeys(windows_for(slo), ratio))
    assert 0 <= low.monthly_budget_consumed <= high.monthly_budget_consumed
    assert high.monthly_budget_consumed == pytest.approx(ratio / (1 - objective))


def test_scaled_windows_shrink_but_keep_production_labels() -> None:
    scale = WindowScale(divisor=86400, minimum_seconds=2)
    promql = error_ratio_promql(SLO, 30 * 86400, scale)
    assert "[30s]" in promql and '"ig_window", "2592000"' in promql
    assert "[2s]" in error_ratio_promql(SLO, 300, scale)
    assert "[30d]" in error_ratio_promql(SLO, 30 * 86400, WindowScale())


def test_good_queries_become_total_minus_good_and_placeholders_are_filled() -> None:
    assert counter_rate("sum(rate(x[{{.window}}]))", "5m") == "sum(sum(rate(x[5m])))"
    assert counter_rate('x{a="b"}', "1h") == 'sum(rate(x{a="b"}[1h]))'
    good = Slo("g", "svc", 0.99, RatioIndicator(total="t_total", good="g_total"), 28 * 86400)
    assert "(sum(rate(t_total[1h])) - (sum(rate(g_total[1h])) or vector(0)))" in error_ratio_promql(
        good, 3600, WindowScale())


def depth(promql: str) -> list[int]:
    """Parenthesis nesting depth after each character."""
    level, levels = 0, []
    for char in promql:
        level += {"(": 1, ")": -1}.get(char, 0)
        levels.append(level)
    return levels


def test_union_is_a_balanced_or_of_every_expression() -> None:
    assert union(["a"]) == "a"
    assert union(["a", "b", "c", "d"]) == "((a) or (b)) or ((c) or (d))"
    assert union(["a", "b", "c"]) == "(a) or ((b) or (c))"
    with pytest.raises(ValueError):
        union([])


def test_many_slos_cost_few_queries() -> None:
    slos = [Slo(f"s{i}", "svc", 0.999, SLO.indicator, 30 * 86400) for i in range(1000)]
    batches = plan_batches(slos, WindowScale(), batch_size=250)
    terms = sum(len(b.terms) for b in batches)
    assert terms == 1000 * len(windows_for(SLO))
    assert len(batches) == math.ceil(terms / 250)
    first = batches[0].promql
    assert first.count(") or (") == 249 and all(t.promql in first for t in batches[0].terms)
    assert max(depth(first)) <= 2 * math.ceil(math.log2(250)) + 4  # a balanced tree, not a 249-deep chain
    with pytest.raises(ValueError):
        plan_batches(slos, WindowScale(), batch_size=0)
