"""Decisions lost to the decision log, tallied until a gap row records them (no I/O: callers count and write)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Gap:
    """How many decisions are missing from the log, and when the first and the last of them were lost."""

    count: int
    first: datetime
    last: datetime


class DecisionLogUnavailable(RuntimeError):
    """The decision cannot be recorded, so it must not be answered (fail closed: UNAVAILABLE / 503)."""


class LossTally:
    def __init__(self) -> None:
        self._gap: Gap | None = None

    @property
    def pending(self) -> Gap | None:
        """The losses not recorded yet, or None."""
        return self._gap

    def add(self, count: int, first: datetime, last: datetime | None = None) -> bool:
        """Tally ``count`` losses; True when they start a new run (the moment to warn)."""
        if count <= 0:
            return False
        last = last or first
        gap = self._gap
        if gap is None:
            self._gap = Gap(count, first, last)
            return True
        self._gap = Gap(gap.count + count, min(gap.first, first), max(gap.last, last))
        return False

    def settle(self, recorded: Gap) -> None:
        """``recorded`` is in a gap row now; losses tallied since it was taken stay pending."""
        gap = self._gap
        if gap is None:
            return
        left = gap.count - recorded.count
        self._gap = Gap(left, gap.first, gap.last) if left > 0 else None
