"""PromQL for many SLOs in few round trips.

Each (SLO, window) error ratio becomes one term labelled with ``ig_slo`` and ``ig_window`` by ``label_replace``;
terms are joined with ``or`` into batches, so a tick over N SLOs costs ceil(N * windows / batch_size) queries.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ig_burn.domain.burn import WindowScale, format_duration, windows_for
from ig_burn.domain.slo import WINDOW_PLACEHOLDERS, Slo, is_counter_query

SLO_LABEL, WINDOW_LABEL = "ig_slo", "ig_window"


@dataclass(frozen=True)
class Term:
    slo: str
    window: int
    promql: str


@dataclass(frozen=True)
class Batch:
    terms: tuple[Term, ...]

    @property
    def promql(self) -> str:
        return " or ".join(t.promql for t in self.terms)


def counter_rate(query: str, window: str) -> str:
    """``sum(rate(selector[window]))``, or the query itself when it carries a ``{{.window}}`` placeholder."""
    for placeholder in WINDOW_PLACEHOLDERS:
        if placeholder in query:
            return f"sum({query.replace(placeholder, window)})"
    if not is_counter_query(query):
        raise ValueError(f"query {query!r} is neither a counter selector nor carries a {{{{.window}}}} placeholder")
    return f"sum(rate({query}[{window}]))"


def error_ratio_promql(slo: Slo, window_seconds: int, scale: WindowScale) -> str:
    window = format_duration(scale.apply(window_seconds))
    total = counter_rate(slo.indicator.total, window)
    # A selector that matches nothing (no error has happened yet) is an empty vector, not zero: default it to 0
    # so the ratio exists whenever there is traffic. No traffic at all stays empty/NaN, i.e. "no data".
    if slo.indicator.bad is not None:
        bad = f"({counter_rate(slo.indicator.bad, window)} or vector(0))"
    else:
        bad = f"({total} - ({counter_rate(slo.indicator.good or '', window)} or vector(0)))"
    ratio = f"({bad} / {total})"
    labelled = f'label_replace({ratio}, "{SLO_LABEL}", "{_escape(slo.name)}", "", "")'
    return f'label_replace({labelled}, "{WINDOW_LABEL}", "{window_seconds}", "", "")'


def plan_batches(slos: Iterable[Slo], scale: WindowScale, batch_size: int) -> list[Batch]:
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    terms = [Term(slo.name, w, error_ratio_promql(slo, w, scale)) for slo in slos for w in windows_for(slo)]
    return [Batch(tuple(terms[i:i + batch_size])) for i in range(0, len(terms), batch_size)]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
