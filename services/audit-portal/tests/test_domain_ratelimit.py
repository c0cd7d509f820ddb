"""Token bucket arithmetic: a burst of `capacity`, then refills at capacity/period; Retry-After is honest."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from ig_portal.domain.ratelimit import BucketSpec, BucketState, demand, first_refusals, granted_count, take

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


BUCKETS = st.sampled_from(["addr:a", "addr:b", "user:alpha/u1", "user:alpha/u2", "download:alpha/u1"])


@given(asks=st.lists(st.lists(BUCKETS, min_size=1, max_size=3, unique=True), max_size=40),
       available=st.dictionaries(BUCKETS, st.floats(min_value=0, max_value=20, allow_nan=False)))
def test_a_batch_admits_exactly_the_requests_one_by_one_takes_would(asks: list[list[str]],
                                                                     available: dict[str, float]) -> None:
    spec = BucketSpec(capacity=20)
    # One by one, at one instant: each request takes from each of its buckets in turn (the old per-request SQL).
    states = {bucket: BucketState(tokens, 0.0) for bucket, tokens in available.items()}
    expected: list[str | None] = []
    for buckets in asks:
        refused: str | None = None
        for bucket in buckets:
            outcome = take(spec, states.get(bucket), 0.0)
            states[bucket] = outcome.state
            if not outcome.granted and refused is None:
                refused = bucket
        expected.append(refused)
    # Batched: one upsert per bucket gives out granted_count(...) tokens, then they go to the first askers.
    asked = demand(asks)
    given_out = {bucket: granted_count(available.get(bucket, spec.capacity), n) for bucket, n in asked.items()}
    assert first_refusals(asks, given_out) == expected
    for bucket, n in asked.items():
        assert 0 <= given_out[bucket] <= n


def test_demand_counts_each_request_once_per_bucket() -> None:
    assert demand([["addr:a", "user:u"], ["addr:a"], ["addr:a", "user:u", "download:u"]]) == \
        {"addr:a": 3, "user:u": 2, "download:u": 1}
