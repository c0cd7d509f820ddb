"""Recording rules that let Prometheus precompute every SLO's error ratios (as Sloth and Pyrra do), and reading
them back.

Each SLO gets one rule group recording, for each window the tick needs, exactly the ratio the tick would
otherwise query (``error_ratio_expression``) as ``ig_burn:slo_error_ratio{ig_slo, ig_window, ig_slo_rev}``, plus
``ig_burn:slo_rules_info{ig_slo, ig_slo_rev} 1``. A tick then reads every SLO's ratios with one selector instead of
many batched queries. ``ig_slo_rev`` is a hash of the SLO's expressions: a tick trusts recorded series only when
their revision is the one its own SLO definitions and window scale produce, so edited SLOs or rules generated for
another scale are queried directly until the rules catch up, never read wrongly.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ig_burn.domain.burn import WindowScale, windows_for
from ig_burn.domain.queries import SLO_LABEL, WINDOW_LABEL, error_ratio_expression, union, windowed_ratio_promql
from ig_burn.domain.slo import Slo

RATIO_METRIC = "ig_burn:slo_error_ratio"
INFO_METRIC = "ig_burn:slo_rules_info"
REVISION_LABEL = "ig_slo_rev"
# One selector returns both kinds of series (a plain selector keeps their metric names).
RECORDED_SELECTOR = f'{{__name__=~"{RATIO_METRIC}|{INFO_METRIC}",{SLO_LABEL}!=""}}'
GROUP_PREFIX = "ig-burn-slo:"


def rule_revision(slo: Slo, scale: WindowScale) -> str:
    digest = hashlib.sha256()
    for window in windows_for(slo):
        digest.update(f"{window}\x00{error_ratio_expression(slo, window, scale)}\x00".encode())
    return digest.hexdigest()[:16]


def rule_group(slo: Slo, scale: WindowScale, interval: str) -> dict[str, Any]:
    """Two rules: every window's ratio in one expression (a rule evaluation has a fixed cost of its own: one rule
    per window cost Prometheus 5.4 s of CPU per 30 s for 1,000 SLOs), and the info series."""
    labels = {SLO_LABEL: slo.name, REVISION_LABEL: rule_revision(slo, scale)}
    ratios = union([windowed_ratio_promql(slo, window, scale) for window in windows_for(slo)])
    return {"name": f"{GROUP_PREFIX}{slo.name}", "interval": interval,
            "rules": [{"record": RATIO_METRIC, "expr": ratios, "labels": dict(labels)},
                      {"record": INFO_METRIC, "expr": "vector(1)", "labels": dict(labels)}]}


def rule_file(slos: Iterable[Slo], scale: WindowScale, interval: str) -> dict[str, Any]:
    """A Prometheus rule file (``rule_files:``): one group per SLO, so Prometheus spreads them over the interval."""
    return {"groups": [rule_group(slo, scale, interval) for slo in slos]}


@dataclass(frozen=True)
class Recorded:
    """What the rules provided: ratios by (SLO, production window) for the SLOs in ``covered`` only."""

    ratios: dict[tuple[str, int], float]
    covered: frozenset[str]


def read_recorded(samples: Sequence[tuple[Mapping[str, str], float]], revisions: Mapping[str, str]) -> Recorded:
    """Keep the series of SLOs whose rules are loaded at the expected revision; NaN (no traffic) is no data."""
    covered: set[str] = set()
    candidates: list[tuple[str, str, float]] = []
    for labels, value in samples:
        slo, revision = labels.get(SLO_LABEL, ""), labels.get(REVISION_LABEL)
        if revision is None or revision != revisions.get(slo):
            continue
        name = labels.get("__name__")
        if name == INFO_METRIC:
            covered.add(slo)
        elif name == RATIO_METRIC and not math.isnan(value):
            candidates.append((slo, labels.get(WINDOW_LABEL, ""), value))
    ratios = {(slo, int(window)): value for slo, window, value in candidates
              if slo in covered and window.isdigit()}
    return Recorded(ratios, frozenset(covered))
