"""Flag keys, values, OFREP bodies and the ETag of the flag set."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from ig_burn.domain.flags import (
    Flag,
    check_flag_key,
    check_flag_value,
    etag_matches,
    flag_set_etag,
    ofrep_not_found,
    ofrep_result,
)

T0 = datetime(2026, 1, 5, tzinfo=UTC)


@pytest.mark.parametrize("key", ["subs.optimizedBuffer", "a", "x-y_z.1"])
def test_good_keys(key: str) -> None:
    assert check_flag_key(key) == key


@pytest.mark.parametrize("key", ["", ".x", "has space", "x" * 129, None, 5])
def test_bad_keys(key: object) -> None:
    with pytest.raises(ValueError):
        check_flag_key(key)


@pytest.mark.parametrize("value", [None, float("nan"), float("inf"), object()])
def test_bad_values(value: object) -> None:
    with pytest.raises(ValueError):
        check_flag_value(value)


def test_ofrep_bodies() -> None:
    flag = Flag("subs.optimizedBuffer", False, True, "alice", "drill", T0, version=3)
    assert ofrep_result(flag) == {"key": "subs.optimizedBuffer", "value": False, "reason": "STATIC",
                                  "variant": "off", "metadata": {"version": 3, "changedBy": "alice", "pinned": True}}
    assert ofrep_not_found("nope")["errorCode"] == "FLAG_NOT_FOUND"


def test_etag_changes_with_any_version_and_matches_if_none_match() -> None:
    a = [Flag("a", True, False, "x", "y", T0, 1), Flag("b", 5, False, "x", "y", T0, 1)]
    b = [Flag("a", True, False, "x", "y", T0, 1), Flag("b", 6, False, "x", "y", T0, 2)]
    assert flag_set_etag(a) == flag_set_etag(list(reversed(a))) != flag_set_etag(b)
    etag = flag_set_etag(a)
    assert etag_matches(etag, etag) and etag_matches(f'W/{etag}, "other"', etag) and etag_matches("*", etag)
    assert not etag_matches(None, etag) and not etag_matches('"other"', etag)
