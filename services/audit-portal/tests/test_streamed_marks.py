"""Streamed watermark forms: whatever the chunking, ``unwrap`` gives back the original bytes, and the verify kit's
tar keeps every member and gains WATERMARK.txt as its last one."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zipfile
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ig_portal.domain.streamed_marks import (
    RECORD,
    JsonEnvelopeStream,
    StreamMark,
    TarAppendStream,
    TextStream,
    UnexpectedTar,
    ZipStream,
)
from ig_portal.domain.watermark import MARK_FILE, Watermark, tar_mark, unwrap

MARK = Watermark(user="auditor@alpha.example", tenant="alpha", issued_at="2026-12-05T23:00:00Z",
                 download_id="dl_" + "a" * 32)


def run(marker: StreamMark, content: bytes, cuts: list[int], views: bool = False) -> bytes:
    """Feeds ``content`` cut at ``cuts``; as read-only views into it when ``views`` (what the evidence client hands
    on: a view into the received message), else as bytes."""
    source = memoryview(content) if views else content
    out, at = [], 0
    for cut in sorted(set(c % (len(content) + 1) for c in cuts)):
        out.append(marker.feed(source[at:cut]))
        at = cut
    out.append(marker.feed(source[at:]))
    out.append(marker.finish())
    return b"".join(out)


contents = st.binary(max_size=5000)
cuts = st.lists(st.integers(min_value=0, max_value=10_000), max_size=8)


@settings(max_examples=60, deadline=None)
@given(content=contents, cuts=cuts, views=st.booleans())
def test_every_stream_form_unwraps_to_the_original_bytes_whatever_the_chunking(content: bytes, cuts: list[int],
                                                                               views: bool) -> None:
    digest = hashlib.sha256(content).hexdigest()
    text = run(TextStream("dr-drill.txt", "text/plain", MARK), content, cuts, views)
    envelope = run(JsonEnvelopeStream("report.json", "application/json", digest, len(content), MARK), content, cuts,
                   views)
    zipped = run(ZipStream("trace.bin", MARK), content, cuts, views)
    assert unwrap("dr-drill.txt", text) == content
    assert unwrap("report.json", envelope) == content
    assert json.loads(envelope)["igWatermark"]["downloadId"] == MARK.download_id
    assert json.loads(envelope)["artifact"] == {"name": "report.json", "mediaType": "application/json",
                                                "sha256": digest, "size": len(content)}
    assert unwrap("trace.bin", zipped) == content
    with zipfile.ZipFile(io.BytesIO(zipped)) as archive:
        assert archive.testzip() is None
        assert MARK.download_id in archive.read(MARK_FILE).decode()
        # Checked against zlib's own CRC-32: zipfile's reading uses the CRC function the stream wrote with.
        assert zlib.crc32(content) == archive.getinfo("trace.bin").CRC


def a_tar(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        folder = tarfile.TarInfo("kit")
        folder.type = tarfile.DIRTYPE
        archive.addfile(folder)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@settings(max_examples=60, deadline=None)
@given(members=st.dictionaries(st.text("abcdefghij", min_size=1, max_size=120).map(lambda n: f"kit/{n}"),
                               st.binary(max_size=3000), max_size=5), cuts=cuts, views=st.booleans())
def test_the_kit_tar_streams_through_whole_and_ends_with_the_watermark(members: dict[str, bytes], cuts: list[int],
                                                                      views: bool) -> None:
    # Names over 100 characters need pax headers: members the appender must follow like any other.
    original = a_tar(members)
    marked = run(TarAppendStream("kit.tar", MARK), original, cuts, views)
    assert len(marked) % RECORD == 0
    with tarfile.open(fileobj=io.BytesIO(marked), mode="r:") as archive:
        names = archive.getnames()
        assert names == ["kit", *members, MARK_FILE]
        for name, data in members.items():
            handle = archive.extractfile(name)
            assert handle is not None and handle.read() == data
    assert tar_mark(marked) == MARK.as_dict()


def test_a_stream_that_is_not_a_tar_is_refused_not_passed_on() -> None:
    marker = TarAppendStream("kit.tar", MARK)
    with pytest.raises(UnexpectedTar):
        marker.feed(b"not a tar header".ljust(512, b"x"))
    truncated = TarAppendStream("kit.tar", MARK)
    truncated.feed(a_tar({"kit/a": b"abc"})[:1024])
    with pytest.raises(UnexpectedTar):
        truncated.finish()


def test_memory_held_by_a_stream_mark_stays_bounded() -> None:
    """Feeding 64 MiB through each form never leaves more than a chunk or so inside the mark."""
    chunk = bytes(range(256)) * 4096  # 1 MiB
    for marker in (TextStream("a.txt", "text/plain", MARK),
                   JsonEnvelopeStream("a.json", "application/json", "0" * 64, 64 * len(chunk), MARK),
                   ZipStream("a.bin", MARK)):
        sent = 0
        for _ in range(64):
            out = marker.feed(chunk)
            sent += len(out)
            # What left equals what came in (plus the form's overhead): nothing accumulates inside.
            assert sent >= (_ + 1) * len(chunk) - 4
        marker.finish()


@settings(max_examples=60, deadline=None)
@given(content=contents, cuts=cuts, views=st.booleans())
def test_the_length_a_form_announces_is_the_length_it_sends(content: bytes, cuts: list[int], views: bool) -> None:
    # The answer's Content-Length: one byte off and the browser gets a truncated or hanging download.
    digest = hashlib.sha256(content).hexdigest()
    for marker in (TextStream("dr-drill.txt", "text/plain", MARK),
                   JsonEnvelopeStream("report.json", "application/json", digest, len(content), MARK),
                   ZipStream("trace.bin", MARK)):
        announced = marker.sent_length(len(content))
        assert announced == len(run(marker, content, cuts, views)), marker.form
        assert marker.sent_length(len(content)) == announced  # asked again after streaming: still the same


def test_a_zip_past_zipfiles_zip64_limit_announces_no_length_and_a_kit_none_at_all() -> None:
    # zipfile adds zip64 extra fields past ZIP64_LIMIT, so "empty archive + size" would be wrong there.
    zipped = ZipStream("trace.bin", MARK)
    below = zipped.sent_length(1 << 20)
    assert below is not None and below > 1 << 20
    assert zipped.sent_length(zipfile.ZIP64_LIMIT) is None
    assert TarAppendStream("kit.tar", MARK).sent_length(10_000) is None
