"""Token buckets: ``capacity`` tokens refilled at ``capacity / period`` per second; one request costs one.

The store applies the same arithmetic inside one SQL statement so replicas share buckets; this module is the
reference the store is tested against and where Retry-After comes from.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
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


def demand(asks: Sequence[Sequence[str]]) -> dict[str, int]:
    """How many tokens each bucket is asked for by a batch of requests (each asks one from each of its buckets)."""
    counts: dict[str, int] = {}
    for buckets in asks:
        for bucket in buckets:
            counts[bucket] = counts.get(bucket, 0) + 1
    return counts


def granted_count(available: float, asked: int) -> int:
    """Tokens a bucket holding ``available`` gives to ``asked`` requests taken one after the other."""
    return max(0, min(asked, math.floor(available)))


def first_refusals(asks: Sequence[Sequence[str]], granted: Mapping[str, int]) -> list[str | None]:
    """For requests in arrival order and the tokens each bucket gave out in their batch: the first of each
    request's buckets that had no token left for it, or None when it got one from every bucket.

    A bucket's tokens go to its first askers, and a request refused by one bucket still spends the tokens
    it got from the others, exactly as if the requests had been taken one by one (``take`` per bucket)."""
    left = dict(granted)
    refusals: list[str | None] = []
    for buckets in asks:
        refused: str | None = None
        for bucket in buckets:
            if left.get(bucket, 0) >= 1:
                left[bucket] -= 1
            elif refused is None:
                refused = bucket
        refusals.append(refused)
    return refusals
