"""The auto-throttle state machine: thresholds, hysteresis, dwell time, stale data, pinned flags, policy YAML."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from ig_burn.domain.burn import BurnReport, compute_report, windows_for
from ig_burn.domain.flags import Flag, split_pinned
from ig_burn.domain.slo import RatioIndicator, Slo, SloValidationError
from ig_burn.domain.throttle import (
    OK,
    THROTTLED,
    Action,
    ThrottlePolicy,
    ThrottleState,
    decide,
    initial_state,
    parse_policy_documents,
)

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
SLO = Slo("api-availability", "api", 0.99, RatioIndicator(total="t", bad="b"), 30 * 86400)
POLICY = ThrottlePolicy(
    name="api-throttle", slo=SLO.name, min_dwell=timedelta(minutes=10),
    actions=(Action("flag", "subs.optimizedBuffer", False, True), Action("rateLimit", "subs.rps", 50, 500),
             Action("pauseExperiments", "experiments.paused", True, False)))


def report(consumed: float) -> BurnReport:
    return compute_report(SLO, dict.fromkeys(windows_for(SLO), consumed * SLO.error_budget))


def state(name: str, since: datetime = T0 - timedelta(hours=1)) -> ThrottleState:
    return ThrottleState(SLO.name, name, since)


@pytest.mark.parametrize(("start", "consumed", "expected"), [
    (OK, 0.19, OK), (OK, 0.20, OK), (OK, 0.21, THROTTLED),
    (THROTTLED, 0.15, THROTTLED), (THROTTLED, 0.10, THROTTLED), (THROTTLED, 0.09, OK),
])
def test_enter_above_20_release_below_10(start: str, consumed: float, expected: str) -> None:
    decision = decide(POLICY, state(start), report(consumed), T0)
    assert decision.state.state == expected
    assert (decision.transition is not None) == (start != expected)


def test_transition_lists_flag_changes_and_reason() -> None:
    decision = decide(POLICY, state(OK), report(0.25), T0)
    assert decision.transition is not None
    assert decision.transition.flag_changes == (("subs.optimizedBuffer", False), ("subs.rps", 50),
                                                ("experiments.paused", True))
    assert "25.0% of the monthly error budget consumed > enter threshold 20%" in decision.transition.reason
    back = decide(POLICY, decision.state, report(0.05), T0 + timedelta(minutes=11))
    assert back.transition is not None
    assert back.transition.flag_changes == (("subs.optimizedBuffer", True), ("subs.rps", 500),
                                            ("experiments.paused", False))


def test_alert_levels_warn_at_20_page_at_30() -> None:
    assert decide(POLICY, state(OK), report(0.15), T0).state.alert == "none"
    assert decide(POLICY, state(OK), report(0.25), T0).state.alert == "warn"
    assert decide(POLICY, state(OK), report(0.31), T0).state.alert == "page"


def test_minimum_dwell_holds_a_fresh_state() -> None:
    fresh = state(THROTTLED, since=T0 - timedelta(minutes=5))
    assert decide(POLICY, fresh, report(0.0), T0).transition is None
    assert decide(POLICY, fresh, report(0.0), T0 + timedelta(minutes=5)).transition is not None


def test_first_alarm_is_not_delayed_by_dwell() -> None:
    assert decide(POLICY, initial_state(SLO.name, T0), report(0.5), T0).state.state == THROTTLED


@pytest.mark.parametrize("observation", [None, "incomplete"])
def test_stale_or_missing_data_never_flips(observation: str | None) -> None:
    values = dict.fromkeys(windows_for(SLO), 0.0)
    values[SLO.month_seconds] = None
    measured = None if observation is None else compute_report(SLO, values)
    for start in (OK, THROTTLED):
        decision = decide(POLICY, state(start), measured, T0)
        assert decision.transition is None and decision.state.state == start and decision.state.stale


@settings(max_examples=200, deadline=None)  # a loaded shared machine must not fail a logic test
@given(st.lists(st.floats(min_value=0.0, max_value=0.6), min_size=1, max_size=60))
def test_flapping_signal_changes_state_at_most_once_per_dwell(signal: list[float]) -> None:
    current = state(OK)
    changes = []
    for minute, consumed in enumerate(signal):
        now = T0 + timedelta(minutes=minute)
        decision = decide(POLICY, current, report(consumed), now)
        if decision.transition is not None:
            changes.append(now)
            assert (consumed > 0.2) == (decision.state.state == THROTTLED)
        current = decision.state
    assert all(b - a >= POLICY.min_dwell for a, b in itertools.pairwise(changes))


def test_pinned_flags_are_left_alone_and_unchanged_values_skipped() -> None:
    current = {
        "subs.optimizedBuffer": Flag("subs.optimizedBuffer", True, True, "alice", "incident drill", T0),
        "subs.rps": Flag("subs.rps", 50, False, "ig-burn", "x", T0),
    }
    apply, skipped = split_pinned([("subs.optimizedBuffer", False), ("subs.rps", 50), ("new.flag", 1)], current)
    assert apply == [("new.flag", 1)]
    assert [(s.key, s.reason) for s in skipped] == [("subs.optimizedBuffer", "pinned by alice: incident drill")]


POLICY_YAML = {
    "apiVersion": "ig.burn/v1", "kind": "ThrottlePolicy", "metadata": {"name": "p"},
    "spec": {"slo": "api-availability", "minDwell": "30s",
             "actions": [{"type": "flag", "flag": "subs.optimizedBuffer", "throttled": False, "normal": True},
                         {"type": "rateLimit", "flag": "subs.rps", "throttled": 50, "normal": 500},
                         {"type": "pauseExperiments", "flag": "experiments.paused"}]},
}


def test_policy_yaml_defaults_come_from_the_brief() -> None:
    [policy] = parse_policy_documents(yaml.safe_dump(POLICY_YAML), "p.yaml")
    assert (policy.enter_above, policy.release_below, policy.warn_above, policy.page_above) == (0.2, 0.1, 0.2, 0.3)
    assert policy.min_dwell == timedelta(seconds=30)
    assert policy.actions[2] == Action("pauseExperiments", "experiments.paused", True, False)


@pytest.mark.parametrize(("change", "field", "reason"), [
    ({"releaseBelow": 0.3}, "spec.releaseBelow", "below enterAbove"),
    ({"minDwell": "soon"}, "spec.minDwell", "not a duration"),
    ({"actions": []}, "spec.actions", "at least one"),
    ({"actions": [{"type": "reboot", "flag": "x"}]}, "spec.actions[0].type", "must be one of"),
    ({"actions": [{"type": "flag", "flag": "bad key!", "throttled": False, "normal": True}]},
     "spec.actions[0].flag", "letters, digits"),
    ({"actions": [{"type": "rateLimit", "flag": "r", "throttled": "fast", "normal": 5}]},
     "spec.actions[0].throttled", "whole number"),
    ({"actions": [{"type": "flag", "flag": "f", "throttled": 0, "normal": True}]},
     "spec.actions[0].throttled", "true or false"),
])
def test_invalid_policies_name_the_field(change: dict[str, object], field: str, reason: str) -> None:
    document = {**POLICY_YAML, "spec": {**POLICY_YAML["spec"], **change}}  # type: ignore[dict-item]
    with pytest.raises(SloValidationError) as caught:
        parse_policy_documents(yaml.safe_dump(document), "p.yaml")
    assert (caught.value.file, caught.value.field) == ("p.yaml", field) and reason in caught.value.reason
