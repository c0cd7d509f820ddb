"""Pre-flight gates: each one is a measured value against a limit; any failure blocks the run."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Bound(StrEnum):
    AT_MOST = "at-most"    # measured must be <= limit
    AT_LEAST = "at-least"  # measured must be >= limit


@dataclass(frozen=True)
class GateResult:
    gate: str
    measured: float
    limit: float
    bound: Bound
    detail: str

    @property
    def passed(self) -> bool:
        if self.bound is Bound.AT_MOST:
            return self.measured <= self.limit
        return self.measured >= self.limit

    def describe(self) -> str:
        sign = "<=" if self.bound is Bound.AT_MOST else ">="
        verdict = "pass" if self.passed else "FAIL"
        return f"{self.gate}: {verdict} (measured {self.measured:g}, limit {sign} {self.limit:g}) {self.detail}"


def storage_gate(green_estimate_bytes: int, free_bytes: int, safety_factor: float, detail: str) -> GateResult:
    """Free space divided by the space green will take must reach the safety factor."""
    ratio = free_bytes / green_estimate_bytes if green_estimate_bytes > 0 else float("inf")
    return GateResult(
        "disk-space", round(ratio, 3), safety_factor, Bound.AT_LEAST,
        f"free {free_bytes} B / estimated green {green_estimate_bytes} B; {detail}".strip(),
    )


def all_passed(results: list[GateResult]) -> bool:
    return all(r.passed for r in results)
