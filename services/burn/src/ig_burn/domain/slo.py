"""SLO declarations: an OpenSLO v1 compatible subset (kind SLO, ratio indicator over Prometheus counters).

A declaration names its service, a ratio indicator (good/total or bad/total PromQL), an objective such as
0.999 and a rolling window of 28-30 days (the "monthly" budget); the weekly budget always uses 7 days.
Every rejection names the file, the field and the reason, so an owner can fix a file without reading code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

_SELECTOR = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})?$", re.DOTALL)
_NAME = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$")
_DURATION = re.compile(r"^(\d+)(s|m|h|d|w)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
WINDOW_PLACEHOLDERS = ("{{.window}}", "{{window}}")
MONTH_MIN_DAYS, MONTH_MAX_DAYS = 28, 30
WEEK_SECONDS = 7 * 86400


class SloValidationError(ValueError):
    """A declaration that cannot be used; ``file``, ``field`` and ``reason`` say where and why."""

    def __init__(self, file: str, field: str, reason: str) -> None:
        super().__init__(f"{file}: {field}: {reason}")
        self.file = file
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class RatioIndicator:
    """Counters in PromQL: either a selector (wrapped in ``sum(rate(...[w]))``) or an expression with a window."""

    total: str
    good: str | None = None
    bad: str | None = None


@dataclass(frozen=True)
class Slo:
    name: str
    service: str
    objective: float
    indicator: RatioIndicator
    month_seconds: int
    description: str = ""
    source: str = ""

    @property
    def error_budget(self) -> float:
        """The allowed error ratio, e.g. 0.001 for a 99.9 % objective."""
        return 1.0 - self.objective


def parse_duration(text: str) -> int:
    """``30d`` -> seconds; OpenSLO durations use a single unit."""
    match = _DURATION.fullmatch(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a duration like 30d, 7d, 1h or 5m")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def parse_slo_documents(text: str, file: str) -> list[Slo]:
    """Every ``kind: SLO`` document in a YAML stream; other OpenSLO kinds are ignored."""
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as error:
        raise SloValidationError(file, "<document>", f"not valid YAML: {error}") from error
    slos = []
    for index, document in enumerate(documents):
        where = f"[{index}]" if len(documents) > 1 else ""
        if not isinstance(document, Mapping):
            raise SloValidationError(file, f"{where}<document>", "must be a mapping")
        if document.get("kind") != "SLO":
            continue
        slos.append(parse_slo(document, file, prefix=where))
    return slos


def parse_slo(document: Mapping[str, Any], file: str, prefix: str = "") -> Slo:
    def fail(field: str, reason: str) -> SloValidationError:
        return SloValidationError(file, f"{prefix}{field}", reason)

    if document.get("apiVersion") != "openslo/v1":
        raise fail("apiVersion", f"must be openslo/v1, got {document.get('apiVersion')!r}")
    metadata = _mapping(document.get("metadata"), fail, "metadata")
    name = metadata.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise fail("metadata.name", "must be a DNS-style name: lower-case letters, digits, '-' or '.'")
    spec = _mapping(document.get("spec"), fail, "spec")
    service = spec.get("service")
    if not isinstance(service, str) or not _NAME.fullmatch(service):
        raise fail("spec.service", "must name the service (lower-case letters, digits, '-' or '.')")
    budgeting = spec.get("budgetingMethod", "Occurrences")
    if budgeting != "Occurrences":
        raise fail("spec.budgetingMethod", f"only Occurrences is supported, got {budgeting!r}")
    indicator = _indicator(spec, fail)
    objective = _objective(spec, fail)
    month = _month_window(spec, fail)
    description = spec.get("description", "")
    return Slo(name=name, service=service, objective=objective, indicator=indicator, month_seconds=month,
               description=str(description), source=file)


def _mapping(value: object, fail: Any, field: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise fail(field, "must be a mapping")
    return value


def _indicator(spec: Mapping[str, Any], fail: Any) -> RatioIndicator:
    indicator = _mapping(spec.get("indicator"), fail, "spec.indicator")
    indicator_spec = _mapping(indicator.get("spec"), fail, "spec.indicator.spec")
    ratio = indicator_spec.get("ratioMetric")
    if ratio is None:
        raise fail("spec.indicator.spec.ratioMetric", "is required (only ratio indicators are supported)")
    ratio = _mapping(ratio, fail, "spec.indicator.spec.ratioMetric")
    if ratio.get("counter", True) is not True:
        raise fail("spec.indicator.spec.ratioMetric.counter", "must be true: queries select counters")
    base = "spec.indicator.spec.ratioMetric"
    total = _query(ratio, "total", fail, base, required=True)
    good = _query(ratio, "good", fail, base, required=False)
    bad = _query(ratio, "bad", fail, base, required=False)
    if (good is None) == (bad is None):
        raise fail(base, "needs exactly one of good or bad beside total")
    return RatioIndicator(total=total or "", good=good, bad=bad)


def _query(ratio: Mapping[str, Any], key: str, fail: Any, base: str, *, required: bool) -> str | None:
    if key not in ratio:
        if required:
            raise fail(f"{base}.{key}", "is required")
        return None
    field = f"{base}.{key}.metricSource"
    source = _mapping(_mapping(ratio[key], fail, f"{base}.{key}").get("metricSource"), fail, field)
    if source.get("type", "Prometheus") != "Prometheus":
        raise fail(f"{field}.type", f"only Prometheus is supported, got {source.get('type')!r}")
    query = _mapping(source.get("spec"), fail, f"{field}.spec").get("query")
    if not isinstance(query, str) or not query.strip():
        raise fail(f"{field}.spec.query", "must be a non-empty PromQL query")
    if not _balanced(query):
        raise fail(f"{field}.spec.query", "has unbalanced brackets, braces or parentheses")
    if not is_counter_query(query.strip()):
        raise fail(f"{field}.spec.query", "must be a counter selector such as http_requests_total{job=\"x\"} "
                   "or an expression with a {{.window}} placeholder such as sum(rate(x[{{.window}}]))")
    return query.strip()


def is_counter_query(query: str) -> bool:
    return any(p in query for p in WINDOW_PLACEHOLDERS) or bool(_SELECTOR.fullmatch(query))


def _balanced(query: str) -> bool:
    pairs = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    quote: str | None = None
    for char in query:
        if quote:
            quote = None if char == quote else quote
        elif char in "\"'`":
            quote = char
        elif char in "([{":
            stack.append(char)
        elif char in pairs and (not stack or stack.pop() != pairs[char]):
            return False
    return not stack and quote is None


def _objective(spec: Mapping[str, Any], fail: Any) -> float:
    objectives = spec.get("objectives")
    if not isinstance(objectives, Sequence) or isinstance(objectives, str) or len(objectives) != 1:
        raise fail("spec.objectives", "must list exactly one objective")
    objective = _mapping(objectives[0], fail, "spec.objectives[0]")
    target = objective.get("target")
    if target is None and "targetPercent" in objective:
        percent = objective["targetPercent"]
        if isinstance(percent, int | float) and not isinstance(percent, bool):
            target = percent / 100.0
    if not isinstance(target, int | float) or isinstance(target, bool) or not 0.0 < float(target) < 1.0:
        raise fail("spec.objectives[0].target", "must be a ratio strictly between 0 and 1, e.g. 0.999")
    return float(target)


def _month_window(spec: Mapping[str, Any], fail: Any) -> int:
    windows = spec.get("timeWindow")
    if not isinstance(windows, Sequence) or isinstance(windows, str) or not windows:
        raise fail("spec.timeWindow", "must list one rolling window of 28 to 30 days")
    for index, window in enumerate(windows):
        field = f"spec.timeWindow[{index}]"
        window = _mapping(window, fail, field)
        if window.get("isRolling") is not True:
            raise fail(f"{field}.isRolling", "must be true: calendar windows are not supported")
        try:
            seconds = parse_duration(str(window.get("duration", "")))
        except ValueError as error:
            raise fail(f"{field}.duration", str(error)) from error
        if MONTH_MIN_DAYS * 86400 <= seconds <= MONTH_MAX_DAYS * 86400:
            return seconds
        if seconds != WEEK_SECONDS:
            raise fail(f"{field}.duration", "must be 28d-30d (monthly budget) or 7d (weekly budget)")
    raise fail("spec.timeWindow", "needs a rolling window of 28 to 30 days for the monthly budget")


def check_unique(slos: Sequence[Slo]) -> None:
    seen: dict[str, str] = {}
    for slo in slos:
        if slo.name in seen:
            raise SloValidationError(slo.source, "metadata.name",
                                     f"SLO {slo.name!r} is already declared in {seen[slo.name]}")
        seen[slo.name] = slo.source
