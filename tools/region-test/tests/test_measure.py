"""RPO/RTO arithmetic and threshold parsing: what the failover report stands on."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ig_region_test.measure import Ack, ThresholdError, judge, measure_rpo, measure_rto, parse_seconds


@pytest.mark.parametrize(("raw", "expected"), [("300", 300.0), ("0", 0.0), ("1.5", 1.5), ("1800", 1800.0)])
def test_thresholds_parse_as_seconds(raw: str, expected: float) -> None:
    assert parse_seconds("--assert-rpo", raw) == expected


@pytest.mark.parametrize("raw", [None, "", "abc", "-1", "nan", "inf", "5s", "1e400"])
def test_bad_or_missing_thresholds_are_refused_naming_the_flag(raw: str | None) -> None:
    with pytest.raises(ThresholdError, match="--assert-rto"):
        parse_seconds("--assert-rto", raw)


def acks(*items: tuple[int, str, float]) -> list[Ack]:
    return [Ack(seq, region, at) for seq, region, at in items]


def test_nothing_lost_when_every_acknowledged_write_is_present() -> None:
    written = acks((1, "a", 1.0), (2, "a", 2.0), (3, "b", 9.0))
    rpo = measure_rpo(written, "a", [1, 2])
    assert (rpo.lost_writes, rpo.lost_seconds, rpo.acknowledged_before_failure) == (0, 0.0, 2)


def test_lost_writes_are_counted_and_timed_from_the_newest_surviving_one() -> None:
    written = acks((1, "a", 1.0), (2, "a", 2.0), (3, "a", 2.5), (4, "a", 3.25), (5, "b", 9.0))
    rpo = measure_rpo(written, "a", [1, 2])
    assert rpo.lost_writes == 2
    assert rpo.lost_sequence_numbers == (3, 4)
    assert rpo.lost_seconds == pytest.approx(1.25)
    assert (rpo.newest_acknowledged_seq, rpo.newest_present_seq) == (4, 2)


def test_everything_lost_counts_the_whole_window() -> None:
    rpo = measure_rpo(acks((1, "a", 1.0), (2, "a", 4.0)), "a", [])
    assert (rpo.lost_writes, rpo.lost_seconds) == (2, 3.0)


def test_rto_is_failure_to_first_write_acknowledged_by_the_new_region() -> None:
    written = acks((1, "a", 1.0), (2, "b", 7.5), (3, "b", 8.0))
    assert measure_rto(5.0, written, "b", time_limit=30).seconds == 2.5


def test_rto_beyond_the_time_limit_or_never_is_exceeded() -> None:
    assert measure_rto(5.0, acks((1, "b", 50.0)), "b", time_limit=30).exceeded_time_limit
    assert measure_rto(5.0, acks((1, "a", 6.0)), "b", time_limit=30).exceeded_time_limit


def test_synchronous_mode_fails_on_any_lost_write_even_within_the_seconds_limit() -> None:
    rpo = measure_rpo(acks((1, "a", 1.0), (2, "a", 1.01)), "a", [1])
    rto = measure_rto(0.0, acks((3, "b", 3.0)), "b", time_limit=60)
    sync = {v.name: v.passed for v in judge("failover", rpo, rto, max_rpo_seconds=300, max_rto_seconds=10,
                                            require_zero_loss=True)}
    asyn = {v.name: v.passed for v in judge("failover", rpo, rto, max_rpo_seconds=300, max_rto_seconds=10,
                                            require_zero_loss=False)}
    assert sync == {"failover.rto": True, "failover.rpo": False}
    assert asyn == {"failover.rto": True, "failover.rpo": True}


def test_rto_over_threshold_fails() -> None:
    rto = measure_rto(0.0, acks((1, "b", 12.0)), "b", time_limit=60)
    verdicts = judge("failover", measure_rpo([], "a", []), rto, max_rpo_seconds=0, max_rto_seconds=10,
                     require_zero_loss=True)
    assert [v.passed for v in verdicts] == [False, True]


@given(st.lists(st.floats(min_value=0, max_value=1e4, allow_nan=False), min_size=1, max_size=60),
       st.data())
def test_rpo_counts_exactly_the_missing_acknowledged_writes(times: list[float], data: st.DataObject) -> None:
    written = [Ack(i + 1, "a", t) for i, t in enumerate(sorted(times))]
    present = data.draw(st.sets(st.sampled_from([a.seq for a in written])))
    rpo = measure_rpo(written, "a", present)
    assert rpo.lost_writes == len(written) - len(present)
    assert set(rpo.lost_sequence_numbers) == {a.seq for a in written} - present
    assert rpo.lost_seconds >= 0
    if rpo.lost_writes == 0:
        assert rpo.lost_seconds == 0
