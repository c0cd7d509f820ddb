from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st
from ig.events.v1 import events_pb2
from ig_common.events.envelope import PROTOBUF_CONTENT_TYPE, from_kafka_record, to_kafka_record


def test_binary_mode_headers_follow_the_kafka_binding() -> None:
    payload = events_pb2.MigrationPhaseChanged(change="add-asset-index-v3", from_phase="expand", to_phase="backfill")
    key, value, headers = to_kafka_record(
        ce_id="evt_1", ce_type="ig.migration.phase_changed.v1", source="/ig/migration", subject="add-asset-index-v3",
        time=datetime(2026, 1, 3, 12, 0, tzinfo=UTC), key=b"add-asset-index-v3", data=payload.SerializeToString(),
    )
    names = dict(headers)
    assert names["ce_id"] == b"evt_1"
    assert names["ce_specversion"] == b"1.0"
    assert names["ce_type"] == b"ig.migration.phase_changed.v1"
    assert names["ce_source"] == b"/ig/migration"
    assert names["ce_subject"] == b"add-asset-index-v3"
    assert names["ce_time"] == b"2026-01-03T12:00:00Z"
    assert names["content-type"] == PROTOBUF_CONTENT_TYPE.encode()
    assert value == payload.SerializeToString()
    assert key == b"add-asset-index-v3"


@given(
    ce_id=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40),
    subject=st.one_of(st.none(), st.text(alphabet="abcdefghijklmnopqrstuvwxyz-0123456789", min_size=1)),
    data=st.binary(max_size=256),
)
def test_round_trip_keeps_every_attribute(ce_id: str, subject: str | None, data: bytes) -> None:
    when = datetime(2026, 11, 28, 9, 30, 15, tzinfo=UTC)
    key, value, headers = to_kafka_record(ce_id=ce_id, ce_type="t.v1", source="/s", subject=subject, time=when,
                                          key=None, data=data)
    event = from_kafka_record("topic", key, value, headers)
    assert (event.id, event.type, event.source, event.subject, event.time, event.data) == (
        ce_id, "t.v1", "/s", subject, when, data)
