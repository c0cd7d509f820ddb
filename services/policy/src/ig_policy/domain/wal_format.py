"""The decision log's write-ahead-log framing (no I/O): batches of length + CRC framed records.

One group commit appends one batch in one write:

    batch header  magic "IGW1" | record count u32 | body length u32 | CRC32 of the first 12 bytes u32
    body          per record: payload length u32 | CRC32 of the payload u32 | payload

The header says how many records the batch holds, so when a machine crash tears the batch (the file ends inside
it, or a record's CRC fails) the records lost are counted exactly: the header's count minus the intact records
before the tear. What the framing cannot count: a tear inside the 16-byte header itself (fewer than 16 bytes of
it reached the disk, or its CRC fails); ``Parsed.torn_unknown`` reports such a header for the caller to log.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

MAGIC = b"IGW1"
HEADER = struct.Struct(">4sIII")
RECORD = struct.Struct(">II")
# A batch is one group commit (at most a few thousand decisions of ~1-2 KiB); a header claiming more is corrupt.
MAX_BODY_BYTES = 256 * 1024 * 1024


def frame_batch(payloads: Sequence[bytes]) -> bytes:
    body = b"".join(RECORD.pack(len(p), zlib.crc32(p)) + p for p in payloads)
    head = MAGIC + struct.pack(">II", len(payloads), len(body))
    return head + struct.pack(">I", zlib.crc32(head)) + body


@dataclass
class Parsed:
    """What a stretch of a segment holds, from its start."""

    records: list[tuple[int, bytes]] = field(default_factory=list)  # (offset of the batch's end, payload)
    consumed: int = 0  # bytes of whole batches (torn ones included when the stretch is final)
    torn_records: int = 0  # records a torn batch announced and did not deliver
    torn_unknown: bool = False  # a header too damaged to count from: the rest of the stretch is skipped
    incomplete: bool = False  # the stretch ends inside a batch (being written, when not final)


def parse(data: bytes | memoryview, *, final: bool) -> Parsed:
    """Whole batches of ``data``. ``final``: nothing more will be appended (a newer segment exists, or the
    writer of this one is gone), so a batch the data ends inside of is torn, not still being written."""
    view = memoryview(data)
    parsed = Parsed()
    at = 0
    while at < len(view):
        if len(view) - at < HEADER.size:
            return _ended_inside(parsed, final, len(view))
        magic, count, body_length, crc = HEADER.unpack_from(view, at)
        if magic != MAGIC or zlib.crc32(view[at:at + 12]) != crc or body_length > MAX_BODY_BYTES:
            # Appends never rewrite: a complete but wrong header is damage, and nothing after it can be framed.
            parsed.torn_unknown = True
            parsed.consumed = len(view)
            return parsed
        body_start = at + HEADER.size
        end = body_start + body_length
        intact = _records(view[body_start:min(end, len(view))])
        if end > len(view):
            if not final:
                parsed.incomplete = True
                return parsed
            parsed.records += [(len(view), p) for p in intact]
            parsed.torn_records += count - len(intact)
            parsed.consumed = len(view)
            return parsed
        parsed.records += [(end, p) for p in intact]
        parsed.torn_records += max(count - len(intact), 0)
        parsed.consumed = at = end
    return parsed


def _ended_inside(parsed: Parsed, final: bool, length: int) -> Parsed:
    if not final:
        parsed.incomplete = True
    else:
        parsed.torn_unknown = True
        parsed.consumed = length
    return parsed


def _records(body: memoryview) -> list[bytes]:
    """The records of ``body`` up to the first one that is cut short or fails its CRC."""
    intact: list[bytes] = []
    at = 0
    while len(body) - at >= RECORD.size:
        length, crc = RECORD.unpack_from(body, at)
        start = at + RECORD.size
        if start + length > len(body):
            break
        payload = bytes(body[start:start + length])
        if zlib.crc32(payload) != crc:
            break
        intact.append(payload)
        at = start + length
    return intact
