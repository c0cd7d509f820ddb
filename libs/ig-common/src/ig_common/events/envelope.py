"""CloudEvents <-> Kafka records, binary content mode, with protobuf bytes as the event data."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from cloudevents.core.bindings.kafka import KafkaMessage, from_binary, to_binary
from cloudevents.core.v1.event import CloudEvent
from google.protobuf.message import Message

PROTOBUF_CONTENT_TYPE = "application/protobuf"
MessageT = TypeVar("MessageT", bound=Message)


class ProtobufDataFormat:
    """A cloudevents ``Format`` for binary mode whose data is already-serialised protobuf bytes."""

    def write_data(self, data: Any, datacontenttype: str | None) -> bytes:
        if not isinstance(data, bytes | bytearray):
            raise TypeError("protobuf CloudEvent data must be bytes")
        return bytes(data)

    def read_data(self, body: bytes, datacontenttype: str | None) -> bytes:
        return body

    def read(self, event_klass: Any, data: str | bytes) -> Any:
        raise NotImplementedError("structured mode is not used on this bus")

    def write(self, event: Any) -> bytes:
        raise NotImplementedError("structured mode is not used on this bus")

    def get_content_type(self) -> str:
        return PROTOBUF_CONTENT_TYPE


_FORMAT = ProtobufDataFormat()


def new_event_id() -> str:
    return f"evt_{uuid.uuid4().hex}"


def new_event_ids(count: int) -> list[str]:
    """``count`` ids as random as ``new_event_id``'s from one read of the system's random source (a batch of events
    pays one system call, not one per event)."""
    raw = os.urandom(16 * count).hex()
    return [f"evt_{raw[i:i + 32]}" for i in range(0, 32 * count, 32)]


@dataclass(frozen=True)
class OutgoingEvent:
    """An event to publish; ``payload`` is the protobuf message from ``ig.events.v1``."""

    topic: str
    type: str
    source: str
    payload: Message
    subject: str | None = None
    key: str | None = None
    id: str = field(default_factory=new_event_id)
    time: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True)
class ReceivedEvent:
    id: str
    type: str
    source: str
    subject: str | None
    time: datetime | None
    topic: str
    key: str | None
    data: bytes

    def parse(self, message: MessageT) -> MessageT:
        """Fill ``message`` (an empty instance of the payload type) from the event data."""
        message.ParseFromString(self.data)
        return message


def to_kafka_record(
    *, ce_id: str, ce_type: str, source: str, subject: str | None, time: datetime, key: bytes | None, data: bytes
) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
    attributes: dict[str, Any] = {
        "id": ce_id, "type": ce_type, "source": source, "specversion": "1.0", "time": time,
        "datacontenttype": PROTOBUF_CONTENT_TYPE,
    }
    if subject:
        attributes["subject"] = subject
    message = to_binary(CloudEvent(attributes, data), _FORMAT, key_mapper=lambda _: key)
    return key, message.value, sorted(message.headers.items())


def from_kafka_record(topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]) -> ReceivedEvent:
    event = from_binary(KafkaMessage(headers=dict(headers), key=key, value=value), _FORMAT)
    attributes = event.get_attributes()
    data = event.get_data()
    return ReceivedEvent(
        id=str(attributes["id"]), type=str(attributes["type"]), source=str(attributes["source"]),
        subject=attributes.get("subject"), time=attributes.get("time"), topic=topic,
        key=key.decode("utf-8") if key is not None else None,
        data=data if isinstance(data, bytes) else b"",
    )
