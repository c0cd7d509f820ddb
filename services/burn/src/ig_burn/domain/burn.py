"""Burn arithmetic: error ratios per window -> budget consumed and SRE-workbook multi-window burn rates.

The windows and factors are the ones Sloth ships (Google SRE workbook, chapter 5): a page fires when both the long
and the short window burn faster than the factor. ``WindowScale`` shrinks every window for simulations; the
production windows are what the code computes by default.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass

from ig_burn.domain.slo import WEEK_SECONDS, Slo


@dataclass(frozen=True)
class AlertWindow:
    long: int
    short: int
    factor: float
    severity: str


HOUR, DAY = 3600, 86400
ALERT_WINDOWS: tuple[AlertWindow, ...] = (
    AlertWindow(HOUR, 5 * 60, 14.4, "page"),
    AlertWindow(6 * HOUR, 30 * 60, 6.0, "page"),
    AlertWindow(DAY, 2 * HOUR, 3.0, "ticket"),
    AlertWindow(3 * DAY, 6 * HOUR, 1.0, "ticket"),
)


@dataclass(frozen=True)
class WindowScale:
    """Divide every window by ``divisor`` (never below ``minimum_seconds``); 1 means production windows."""

    divisor: float = 1.0
    minimum_seconds: float = 1.0

    def apply(self, seconds: int) -> float:
        return max(seconds / self.divisor, self.minimum_seconds)


def format_duration(seconds: float) -> str:
    """A PromQL duration; milliseconds keep scaled windows exact."""
    millis = round(seconds * 1000)
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if millis % size == 0:
            return f"{millis // size}{unit}"
    return f"{millis}ms"


@functools.cache
def label_duration(seconds: int) -> str:
    """The production name of a window (``1h``, ``30d``), used as the label even when windows are scaled."""
    return format_duration(seconds)


def windows_for(slo: Slo) -> tuple[int, ...]:
    """Every distinct window (production seconds) one SLO needs, longest first."""
    return _windows(slo.month_seconds)


@functools.cache
def _windows(month_seconds: int) -> tuple[int, ...]:
    needed = {month_seconds, WEEK_SECONDS}
    for window in ALERT_WINDOWS:
        needed.update((window.long, window.short))
    return tuple(sorted(needed, reverse=True))


_RATE_WINDOWS = tuple(sorted({w for a in ALERT_WINDOWS for w in (a.long, a.short)}))


@dataclass(frozen=True)
class BurnRate:
    window: str
    rate: float


@dataclass(frozen=True)
class AlertCondition:
    long_window: str
    short_window: str
    factor: float
    severity: str
    firing: bool


@dataclass(frozen=True)
class BurnReport:
    """One SLO's burn; ``complete`` is False when a window had no data (the caller must not act on it)."""

    slo: str
    service: str
    objective: float
    monthly_budget_consumed: float
    weekly_budget_consumed: float
    burn_rates: tuple[BurnRate, ...]
    alerts: tuple[AlertCondition, ...]
    complete: bool
    missing_windows: tuple[str, ...] = ()

    @property
    def remaining_budget(self) -> float:
        return 1.0 - self.monthly_budget_consumed

    @property
    def page(self) -> bool:
        return any(a.firing and a.severity == "page" for a in self.alerts)


def compute_report(slo: Slo, error_ratios: Mapping[int, float | None]) -> BurnReport:
    """``error_ratios`` maps a production window (seconds) to the error ratio measured over it (None: no data).

    Budget consumed = error ratio over the window / allowed error ratio: 0.2 means a fifth of the budget is spent.
    """
    budget = slo.error_budget
    windows = windows_for(slo)
    usable = {w: _usable(error_ratios.get(w)) for w in windows}
    burn = {w: 0.0 if ratio is None else ratio / budget for w, ratio in usable.items()}
    missing = tuple(label_duration(w) for w in windows if usable[w] is None)
    alerts = tuple(
        AlertCondition(label_duration(a.long), label_duration(a.short), a.factor, a.severity,
                       burn[a.long] > a.factor and burn[a.short] > a.factor)
        for a in ALERT_WINDOWS
    )
    return BurnReport(
        slo=slo.name, service=slo.service, objective=slo.objective,
        monthly_budget_consumed=burn[slo.month_seconds], weekly_budget_consumed=burn[WEEK_SECONDS],
        burn_rates=tuple(BurnRate(label_duration(w), burn[w]) for w in _RATE_WINDOWS), alerts=alerts,
        complete=not missing, missing_windows=missing,
    )


def _usable(ratio: float | None) -> float | None:
    """NaN (no traffic: 0/0) and negative values (counter resets) count as no data."""
    if ratio is None or math.isnan(ratio) or math.isinf(ratio) or ratio < 0:
        return None
    return min(ratio, 1.0)
