"""PromQL for many SLOs in few round trips.

Each (SLO, window) error ratio becomes one term labelled with ``ig_slo`` and ``ig_window`` by ``label_replace``;
terms are joined with ``or`` (as a balanced tree) into batches, so a tick over N SLOs costs
ceil(N * windows / batch_size) queries. ``ig_burn.domain.recording`` lets Prometheus record the same ratios.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
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

    @functools.cached_property
    def promql(self) -> str:
        return union([t.promql for t in self.terms])


def union(expressions: Sequence[str]) -> str:
    """``a or b or c ...`` of vectors with disjoint label sets, as a balanced tree.

    PromQL evaluates a chain of ``or`` left to right, matching the ever-growing left side again at every step
    (quadratic in the number of terms); a balanced tree gives the same vector at n log n. Measured on 1,000 SLOs:
    Prometheus CPU per tick 5.3 s -> 3.0 s for 250-term queries, 13.4 s -> 3.2 s for 1,000-term queries.
    """
    if not expressions:
        raise ValueError("a union needs at least one expression")
    if len(expressions) == 1:
        return expressions[0]
    middle = len(expressions) // 2
    return f"({union(expressions[:middle])}) or ({union(expressions[middle:])})"


def counter_rate(query: str, window: str) -> str:
    """``sum(rate(selector[window]))``, or the query itself when it carries a ``{{.window}}`` placeholder."""
    for placeholder in WINDOW_PLACEHOLDERS:
        if placeholder in query:
            return f"sum({query.replace(placeholder, window)})"
    if not is_counter_query(query):
        raise ValueError(f"query {query!r} is neither a counter selector nor carries a {{{{.window}}}} placeholder")
    return f"sum(rate({query}[{window}]))"


def error_ratio_expression(slo: Slo, window_seconds: int, scale: WindowScale) -> str:
    """The SLO's error ratio over one (scaled) window: bad / total, unlabelled."""
    window = format_duration(scale.apply(window_seconds))
    total = counter_rate(slo.indicator.total, window)
    # A selector that matches nothing (no error has happened yet) is an empty vector, not zero: default it to 0
    # so the ratio exists whenever there is traffic. No traffic at all stays empty/NaN, i.e. "no data".
    if slo.indicator.bad is not None:
        bad = f"({counter_rate(slo.indicator.bad, window)} or vector(0))"
    else:
        bad = f"({total} - ({counter_rate(slo.indicator.good or '', window)} or vector(0)))"
    return f"({bad} / {total})"


def windowed_ratio_promql(slo: Slo, window_seconds: int, scale: WindowScale) -> str:
    """The error ratio labelled with its (production) window, so one SLO's windows can share an expression."""
    ratio = error_ratio_expression(slo, window_seconds, scale)
    return f'label_replace({ratio}, "{WINDOW_LABEL}", "{window_seconds}", "", "")'


def error_ratio_promql(slo: Slo, window_seconds: int, scale: WindowScale) -> str:
    """The error ratio labelled with its SLO and (production) window, so many can share one query."""
    labelled = windowed_ratio_promql(slo, window_seconds, scale)
    return f'label_replace({labelled}, "{SLO_LABEL}", "{_escape(slo.name)}", "", "")'


def terms_for(slo: Slo, scale: WindowScale) -> tuple[Term, ...]:
    return tuple(Term(slo.name, w, error_ratio_promql(slo, w, scale)) for w in windows_for(slo))


def plan_batches(slos: Iterable[Slo], scale: WindowScale, batch_size: int) -> list[Batch]:
    return batch_terms([t for slo in slos for t in terms_for(slo, scale)], batch_size)


def batch_terms(terms: Sequence[Term], batch_size: int) -> list[Batch]:
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    return [Batch(tuple(terms[i:i + batch_size])) for i in range(0, len(terms), batch_size)]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
