"""Auto-throttle policies and their hysteresis state machine.

A policy binds one SLO's monthly budget consumption to flag actions. The state enters ``throttled`` above
``enterAbove`` and leaves it only below ``releaseBelow`` (hysteresis), and never before ``minDwell`` has passed in
the current state, so a signal flapping around a threshold cannot flap flags. Stale or incomplete data never moves
the state.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

import yaml

from ig_burn.domain.burn import BurnReport
from ig_burn.domain.flags import FlagValue, check_flag_key
from ig_burn.domain.slo import SloValidationError, parse_duration

OK, THROTTLED = "ok", "throttled"
AlertLevel = Literal["none", "warn", "page"]
ACTION_TYPES = ("flag", "rateLimit", "pauseExperiments")
_NAME = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class Action:
    """Set ``flag`` to ``throttled`` on entering the throttle and back to ``normal`` on release."""

    type: str
    flag: str
    throttled: FlagValue
    normal: FlagValue


@dataclass(frozen=True)
class ThrottlePolicy:
    name: str
    slo: str
    actions: tuple[Action, ...]
    enter_above: float = 0.20
    release_below: float = 0.10
    warn_above: float = 0.20
    page_above: float = 0.30
    min_dwell: timedelta = timedelta(minutes=10)
    source: str = ""


@dataclass(frozen=True)
class ThrottleState:
    slo: str
    state: str
    since: datetime
    alert: AlertLevel = "none"
    stale: bool = False
    monthly_budget_consumed: float = 0.0
    evaluated_at: datetime | None = None


@dataclass(frozen=True)
class Transition:
    slo: str
    from_state: str
    to_state: str
    monthly_budget_consumed: float
    reason: str
    flag_changes: tuple[tuple[str, FlagValue], ...]


@dataclass(frozen=True)
class Decision:
    state: ThrottleState
    transition: Transition | None


def alert_level(policy: ThrottlePolicy, consumed: float) -> AlertLevel:
    if consumed > policy.page_above:
        return "page"
    if consumed > policy.warn_above:
        return "warn"
    return "none"


def initial_state(slo: str, now: datetime) -> ThrottleState:
    # A fresh SLO may throttle at once: the dwell time protects against flapping, not against the first alarm.
    return ThrottleState(slo=slo, state=OK, since=now - timedelta(days=365))


def decide(policy: ThrottlePolicy, current: ThrottleState, report: BurnReport | None, now: datetime) -> Decision:
    """The next state; ``report`` None (query failed) or incomplete (missing series) keeps the state, stale."""
    if report is None or not report.complete:
        return Decision(replace(current, stale=True, evaluated_at=now), None)
    consumed = report.monthly_budget_consumed
    observed = replace(current, stale=False, monthly_budget_consumed=consumed, evaluated_at=now,
                       alert=alert_level(policy, consumed))
    dwelt = now - current.since >= policy.min_dwell
    percent = f"{consumed:.1%} of the monthly error budget consumed"
    if current.state == OK and consumed > policy.enter_above and dwelt:
        reason = f"{percent} > enter threshold {policy.enter_above:.0%} (policy {policy.name})"
        return _move(policy, observed, THROTTLED, reason, now)
    if current.state == THROTTLED and consumed < policy.release_below and dwelt:
        reason = f"{percent} < release threshold {policy.release_below:.0%} (policy {policy.name})"
        return _move(policy, observed, OK, reason, now)
    return Decision(observed, None)


def _move(policy: ThrottlePolicy, observed: ThrottleState, to_state: str, reason: str, now: datetime) -> Decision:
    changes = tuple((a.flag, a.throttled if to_state == THROTTLED else a.normal) for a in policy.actions)
    transition = Transition(observed.slo, observed.state, to_state, observed.monthly_budget_consumed, reason, changes)
    return Decision(replace(observed, state=to_state, since=now), transition)


def parse_policy_documents(text: str, file: str) -> list[ThrottlePolicy]:
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as error:
        raise SloValidationError(file, "<document>", f"not valid YAML: {error}") from error
    policies = []
    for index, document in enumerate(documents):
        prefix = f"[{index}]" if len(documents) > 1 else ""
        if isinstance(document, Mapping) and document.get("kind") == "ThrottlePolicy":
            policies.append(parse_policy(document, file, prefix))
    return policies


def parse_policy(document: Mapping[str, Any], file: str, prefix: str = "") -> ThrottlePolicy:
    def fail(field: str, reason: str) -> SloValidationError:
        return SloValidationError(file, f"{prefix}{field}", reason)

    if document.get("apiVersion") != "ig.burn/v1":
        raise fail("apiVersion", f"must be ig.burn/v1, got {document.get('apiVersion')!r}")
    metadata = document.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise fail("metadata.name", "must be a DNS-style name")
    spec = document.get("spec")
    if not isinstance(spec, Mapping):
        raise fail("spec", "must be a mapping")
    slo = spec.get("slo")
    if not isinstance(slo, str) or not _NAME.fullmatch(slo):
        raise fail("spec.slo", "must name the SLO this policy protects")
    thresholds = {key: _ratio(spec, key, default, fail) for key, default in
                  (("enterAbove", 0.20), ("releaseBelow", 0.10), ("warnAbove", 0.20), ("pageAbove", 0.30))}
    if thresholds["releaseBelow"] >= thresholds["enterAbove"]:
        raise fail("spec.releaseBelow", "must be below enterAbove, or the throttle would flap")
    if thresholds["pageAbove"] < thresholds["warnAbove"]:
        raise fail("spec.pageAbove", "must not be below warnAbove")
    try:
        dwell = timedelta(seconds=parse_duration(str(spec.get("minDwell", "10m"))))
    except ValueError as error:
        raise fail("spec.minDwell", str(error)) from error
    actions = _actions(spec.get("actions"), fail)
    return ThrottlePolicy(name=name, slo=slo, actions=actions, enter_above=thresholds["enterAbove"],
                          release_below=thresholds["releaseBelow"], warn_above=thresholds["warnAbove"],
                          page_above=thresholds["pageAbove"], min_dwell=dwell, source=file)


def _ratio(spec: Mapping[str, Any], key: str, default: float, fail: Any) -> float:
    value = spec.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0.0 <= value <= 10.0:
        raise fail(f"spec.{key}", "must be a share of the budget, e.g. 0.2 for 20 %")
    return float(value)


def _actions(raw: object, fail: Any) -> tuple[Action, ...]:
    if not isinstance(raw, Sequence) or isinstance(raw, str) or not raw:
        raise fail("spec.actions", "must list at least one action")
    actions = []
    for index, item in enumerate(raw):
        field = f"spec.actions[{index}]"
        if not isinstance(item, Mapping):
            raise fail(field, "must be a mapping")
        kind = item.get("type")
        if kind not in ACTION_TYPES:
            raise fail(f"{field}.type", f"must be one of {', '.join(ACTION_TYPES)}")
        flag = item.get("flag")
        try:
            check_flag_key(flag)
        except ValueError as error:
            raise fail(f"{field}.flag", str(error)) from error
        assert isinstance(flag, str)
        actions.append(_action(kind, flag, item, field, fail))
    return tuple(actions)


def _action(kind: str, flag: str, item: Mapping[str, Any], field: str, fail: Any) -> Action:
    if kind == "pauseExperiments":
        # The flag reads "experiments paused": true while throttled.
        return Action(kind, flag, True, False)
    throttled, normal = item.get("throttled"), item.get("normal")
    if kind == "flag":
        for key, value in (("throttled", throttled), ("normal", normal)):
            if not isinstance(value, bool):
                raise fail(f"{field}.{key}", "must be true or false")
    else:
        for key, value in (("throttled", throttled), ("normal", normal)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise fail(f"{field}.{key}", "must be a non-negative whole number (requests per second)")
    assert throttled is not None and normal is not None
    return Action(kind, flag, throttled, normal)


def check_policies(policies: Sequence[ThrottlePolicy], slo_names: set[str]) -> None:
    seen: set[str] = set()
    for policy in policies:
        if policy.slo not in slo_names:
            raise SloValidationError(policy.source, "spec.slo", f"no SLO named {policy.slo!r} is declared")
        if policy.slo in seen:
            raise SloValidationError(policy.source, "spec.slo", f"SLO {policy.slo!r} already has a throttle policy")
        seen.add(policy.slo)
