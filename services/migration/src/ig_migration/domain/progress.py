"""Backfill progress as an operator reads it: done/total, rows per second, time left."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    elapsed_seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.done / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0

    @property
    def eta_seconds(self) -> float:
        rate = self.rows_per_second
        left = max(self.total - self.done, 0)
        if left == 0:
            return 0.0
        return left / rate if rate > 0 else float("inf")

    @property
    def share(self) -> float:
        return min(self.done / self.total, 1.0) if self.total > 0 else 1.0

    def describe(self) -> str:
        eta = "unknown" if self.eta_seconds == float("inf") else f"{self.eta_seconds:.1f}s"
        return (f"{self.done}/{self.total} ({self.share:.1%}), {self.rows_per_second:,.0f} rows/s, ETA {eta}")
