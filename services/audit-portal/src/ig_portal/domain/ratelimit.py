"""Token buckets: ``capacity`` tokens refilled at ``capacity / period`` per second; one request costs one.

The store applies the same arithmetic inside one SQL statement so replicas share buckets; this module is the
reference the store is tested against and where Retry-After comes from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class BucketSpec:
    capacity: float
    period_seconds: float = 60.0

    @property
    def refill_per_second(self) -> float:
        return self.capacity / self.period_seconds


@dataclass(frozen=True)
class BucketState:
    tokens: float
    at: float


@dataclass(frozen=True)
class Outcome:
    granted: bool
    state: BucketState
    retry_after_seconds: int


def take(spec: BucketSpec, state: BucketState | None, now: float) -> Outcome:
    """Refill for the time elapsed since ``state`` then try to take one token."""
    if state is None:
        available = spec.capacity
    else:
        elapsed = max(0.0, now - state.at)
        available = min(spec.capacity, state.tokens + elapsed * spec.refill_per_second)
    if available >= 1.0:
        return Outcome(True, BucketState(available - 1.0, now), 0)
    return Outcome(False, BucketState(available, now), retry_after(spec, available))


def retry_after(spec: BucketSpec, tokens: float) -> int:
    """Whole seconds until one token is available again (at least 1)."""
    missing = max(0.0, 1.0 - tokens)
    return max(1, math.ceil(missing / spec.refill_per_second))
