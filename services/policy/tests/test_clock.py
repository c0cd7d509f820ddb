"""The server's clock judges time (issue #25, item 3): a sent context.time is accepted only within the skew, and
time windows are judged at the server's moment, not the caller's. In-process against the real OPA."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from ig.policy.v1 import policy_pb2, policy_pb2_grpc
from ig_common.settings import SettingsError, load_settings
from ig_policy.clock import FileClock, clock_from, system_clock
from ig_policy.domain.clock import time_errors
from ig_policy.settings import Settings
from ig_policy.testing import GOLDEN_NOW, SettableClock, golden_cases, proto_from_input, set_test_clock

BY_NAME = {c.name: c for c in golden_cases()}
ALLOW = proto_from_input(BY_NAME["same tenant and purpose may read"].input)  # alpha, Monday 10:00Z
REQUIRED = {"IG_DATABASE_URL": "postgresql://ig@127.0.0.1:1/ig", "IG_KAFKA_BOOTSTRAP": "127.0.0.1:1"}
SATURDAY_NIGHT = datetime(2026, 1, 10, 22, 0, tzinfo=UTC)  # 23:00 in Berlin: outside alpha's window


def stamped(moment: datetime) -> policy_pb2.DecideRequest:
    request = policy_pb2.DecideRequest()
    request.CopyFrom(ALLOW)
    when = Timestamp()
    when.FromDatetime(moment)
    request.context.time.CopyFrom(when)
    return request


@pytest.fixture
def moved(clock: SettableClock) -> Iterator[SettableClock]:
    yield clock
    clock.moment = GOLDEN_NOW


def test_time_within_the_skew_is_accepted_outside_it_named() -> None:
    skew = timedelta(minutes=5)
    assert time_errors(GOLDEN_NOW + timedelta(minutes=5), GOLDEN_NOW, skew) == []
    assert time_errors(GOLDEN_NOW - timedelta(minutes=5), GOLDEN_NOW, skew) == []
    assert time_errors(None, GOLDEN_NOW, skew) == []
    ahead = time_errors(GOLDEN_NOW + timedelta(minutes=5, seconds=1), GOLDEN_NOW, skew)
    assert [e.field for e in ahead] == ["context.time"] and "ahead of the server's clock" in ahead[0].problem
    behind = time_errors(GOLDEN_NOW - timedelta(days=3), GOLDEN_NOW, skew, "requests[2].context.time")
    assert str(behind[0]) == "requests[2].context.time: is 3 d behind the server's clock (at most 5 min is accepted)"


async def test_a_request_dated_ten_years_ahead_is_refused(stub: policy_pb2_grpc.PolicyServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.Decide(stamped(GOLDEN_NOW + timedelta(days=3653)))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "context.time: is 3653 d ahead of the server's clock" in (raised.value.details() or "")


async def test_a_forged_weekday_time_on_saturday_night_is_refused(
    stub: policy_pb2_grpc.PolicyServiceStub, moved: SettableClock
) -> None:
    moved.moment = SATURDAY_NIGHT
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.Decide(stamped(GOLDEN_NOW))  # "Monday 10:00", sent on Saturday night
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "context.time: " in (raised.value.details() or "")


async def test_the_window_is_judged_at_the_servers_time_not_the_sent_one(
    stub: policy_pb2_grpc.PolicyServiceStub, moved: SettableClock
) -> None:
    # alpha's window opens at 07:00 Berlin (06:00Z). A time sent 4 minutes ahead is inside the skew, and inside
    # the window; the server's 05:58Z is not, and decides.
    moved.moment = datetime(2026, 1, 5, 5, 58, tzinfo=UTC)
    early = await stub.Decide(stamped(moved.moment + timedelta(minutes=4)))
    assert (early.result, early.rule_id) == (policy_pb2.RESULT_DENY, "ig.time.outside_window")
    moved.moment = datetime(2026, 1, 5, 6, 2, tzinfo=UTC)
    opened = await stub.Decide(stamped(moved.moment - timedelta(minutes=4)))
    assert (opened.result, opened.rule_id) == (policy_pb2.RESULT_ALLOW, "ig.purpose.allow_read")


async def test_a_batch_names_the_item_whose_time_is_off(stub: policy_pb2_grpc.PolicyServiceStub) -> None:
    requests = [ALLOW, stamped(GOLDEN_NOW - timedelta(hours=2))]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.BatchDecide(policy_pb2.BatchDecideRequest(requests=requests))
    assert "requests[1].context.time: is 2 h behind" in (raised.value.details() or "")


def test_the_file_clock_reads_its_instant_on_every_call(tmp_path: Path) -> None:
    path = tmp_path / "clock"
    set_test_clock(path, GOLDEN_NOW)
    clock = FileClock(path)
    assert clock() == GOLDEN_NOW
    set_test_clock(path, "2026-01-10T23:00:00+01:00")
    assert clock() == SATURDAY_NIGHT


def test_the_file_clock_sees_a_new_instant_of_the_same_length_written_at_once(tmp_path: Path) -> None:
    # It parses again only when the text changed: a new instant of the same length, in the same clock tick,
    # written in place (not replaced), must still be the next call's time.
    path = tmp_path / "clock"
    path.write_text("2026-01-05T10:00:00Z")
    clock = FileClock(path)
    assert clock() == GOLDEN_NOW
    with path.open("r+") as same_file:
        same_file.write("2026-01-10T22:00:00Z")
    assert clock() == SATURDAY_NIGHT


def test_without_a_test_clock_file_the_system_clock_is_used() -> None:
    assert clock_from(None) is system_clock


@pytest.mark.parametrize("content", ["Monday morning", "2026-01-05T10:00:00"])
def test_a_bad_test_clock_file_stops_start_up_naming_it(
    tmp_path: Path, content: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "clock"
    path.write_text(content)
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("IG_TEST_CLOCK_FILE", str(path))
    with pytest.raises(SettingsError):
        load_settings(Settings)
    assert "invalid setting IG_TEST_CLOCK_FILE" in capsys.readouterr().err


def test_the_skew_defaults_to_five_minutes(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(Settings)
    assert settings.clock_skew_s == 300 and settings.test_clock_file is None
