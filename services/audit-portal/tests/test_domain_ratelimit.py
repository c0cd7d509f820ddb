"""Token bucket arithmetic: a burst of `capacity`, then refills at capacity/period; Retry-After is honest."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from ig_portal.domain.ratelimit import BucketSpec, BucketState, take

SPEC = BucketSpec(capacity=60, period_seconds=60)


def test_sixty_first_request_in_a_burst_is_denied_with_retry_after() -> None:
    state: BucketState | None = None
    for _ in range(60):
        outcome = take(SPEC, state, now=100.0)
        assert outcome.granted
        state = outcome.state
    denied = take(SPEC, state, now=100.0)
    assert not denied.granted and denied.retry_after_seconds == 1
    assert take(SPEC, denied.state, now=101.0).granted


def test_download_bucket_retry_after_is_six_seconds() -> None:
    spec = BucketSpec(capacity=10)
    state: BucketState | None = None
    for _ in range(10):
        state = take(spec, state, 0.0).state
    assert take(spec, state, 0.0).retry_after_seconds == 6


@given(times=st.lists(st.floats(min_value=0, max_value=600, allow_nan=False), min_size=1, max_size=300),
       capacity=st.integers(min_value=1, max_value=100))
def test_grants_never_exceed_capacity_plus_refill(times: list[float], capacity: int) -> None:
    spec = BucketSpec(capacity=capacity, period_seconds=60)
    state: BucketState | None = None
    granted = 0
    ordered = sorted(times)
    for now in ordered:
        outcome = take(spec, state, now)
        granted += outcome.granted
        state = outcome.state
    elapsed = ordered[-1] - ordered[0]
    assert granted <= capacity + elapsed * spec.refill_per_second + 1e-9
