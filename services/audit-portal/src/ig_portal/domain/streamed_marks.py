"""Watermarks applied while the artifact streams through: each form holds only a bounded amount of the artifact at
a time, so a 1 GiB download costs the portal the same memory as a 1 KiB one.

A mark is a ``StreamMark``: ``feed`` takes the next piece of the original and returns the bytes to send now,
``finish`` returns the tail. The forms are the ones ``watermark.unwrap`` (and ``ig-portal-unwrap``) reverse:

- text: the ``# IG-WATERMARK`` header line, then the original bytes untouched
- JSON: the envelope ``{"igWatermark", "artifact", "contentBase64"}``, its base64 written 3 bytes at a time
- anything else: a zip written front to back (data descriptors instead of seeking back), ``WATERMARK.txt`` first,
  the original stored uncompressed: deflating a gigabyte would cost the portal seconds of CPU per download, and
  the mark, not compression, is the point
- a verify kit (an uncompressed tar): the members pass through untouched; at the archive's end-of-archive blocks
  ``WATERMARK.txt`` is appended as the last member, then a new end-of-archive

PDF stamping needs the whole document; it is not a stream form (see ``api.pdf_stamping``).
"""

from __future__ import annotations

import base64
import io
import json
import tarfile
import zipfile
from typing import IO, Protocol

from isal import isal_zlib

from ig_portal.domain.watermark import ENVELOPE_KEY, MARK_FILE, TEXT_HEADER, Watermark, ascii_only

BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE
# A chunk as the evidence stream hands it on: a read-only view into the received message (no copy), or bytes.
Chunk = bytes | memoryview

# zipfile takes each member's CRC-32 from its module-level ``crc32`` (zlib's). ISA-L's (python-isal, which the
# evidence service already uses for its gzip) is the same function, running value and all, about ten times faster
# here: profiled, zlib's CRC was 10-13 % of the portal's CPU for a 1 GiB zip download. zipfile's reading (the CRC
# check of ``unwrap``) uses the same name, so the tests also check each CRC against zlib's own.
zipfile.crc32 = isal_zlib.crc32  # type: ignore[attr-defined]  # typeshed does not declare it


class StreamMark(Protocol):
    form: str
    media_type: str
    filename: str

    def feed(self, chunk: Chunk) -> Chunk: ...

    def finish(self) -> bytes: ...

    def sent_length(self, size: int) -> int | None:
        """How many bytes feed and finish return in all for an original of ``size`` bytes, when the form knows it
        in advance (the answer then carries a Content-Length instead of chunked framing); None when it does not."""
        ...


def mark_text(mark: Watermark) -> bytes:
    return (mark.line() + "\n" + json.dumps(mark.as_dict()) + "\n").encode()


class TextStream:
    form = "text"

    def __init__(self, name: str, media_type: str, mark: Watermark) -> None:
        self.filename, self.media_type = name, media_type or "text/plain"
        self._header: bytes | None = TEXT_HEADER + ascii_only(mark.line()).encode() + b"\n"
        self._header_length = len(self._header)

    def feed(self, chunk: Chunk) -> Chunk:
        header, self._header = self._header, None
        return header + chunk if header else chunk

    def finish(self) -> bytes:
        header, self._header = self._header, None
        return header or b""

    def sent_length(self, size: int) -> int | None:
        return self._header_length + size


class JsonEnvelopeStream:
    form = "json"
    media_type = "application/json"

    def __init__(self, name: str, media_type: str, sha256: str, size: int, mark: Watermark) -> None:
        self.filename = name
        head = {ENVELOPE_KEY: mark.as_dict(),
                "artifact": {"name": name, "mediaType": media_type, "sha256": sha256, "size": size}}
        # The envelope's JSON up to the opening quote of contentBase64; the closing quote and brace follow at the end.
        self._head: bytes | None = json.dumps(head)[:-1].encode() + b', "contentBase64": "'
        self._head_length = len(self._head)
        self._carry = b""

    def feed(self, chunk: Chunk) -> Chunk:
        data = self._carry + chunk
        whole = len(data) - len(data) % 3  # base64 of whole 3-byte groups only: no padding mid-stream
        self._carry = data[whole:]
        head, self._head = self._head, None
        return (head or b"") + base64.b64encode(data[:whole])

    def finish(self) -> bytes:
        head, self._head = self._head, None
        tail = base64.b64encode(self._carry)
        self._carry = b""
        return (head or b"") + tail + b'"}'

    def sent_length(self, size: int) -> int | None:
        return self._head_length + 4 * -(-size // 3) + len(b'"}')


class _Drain(io.RawIOBase):
    """Where zipfile writes: keeps what was written until taken; not seekable, so zipfile uses data descriptors."""

    def __init__(self) -> None:
        self._parts: list[Chunk] = []

    def writable(self) -> bool:
        return True

    def write(self, data: object) -> int:
        # Kept as given when it cannot change later (bytes, a read-only view): a member's data passes uncopied.
        chunk = data if isinstance(data, bytes) or (isinstance(data, memoryview) and data.readonly) \
            else bytes(data)  # type: ignore[call-overload]
        self._parts.append(chunk)
        return len(chunk)

    def take(self) -> Chunk:
        if len(self._parts) == 1:
            return self._parts.pop()
        out = b"".join(self._parts)
        self._parts.clear()
        return out


class ZipStream:
    form = "zip"
    media_type = "application/zip"

    def __init__(self, name: str, mark: Watermark) -> None:
        self.filename = f"{name}.zip"
        self._name, self._mark = name, mark
        self._out = _Drain()
        self._archive, self._member = self._open(self._out)

    def _open(self, out: io.RawIOBase) -> tuple[zipfile.ZipFile, IO[bytes]]:
        archive = zipfile.ZipFile(out, "w", zipfile.ZIP_STORED)
        archive.writestr(MARK_FILE, mark_text(self._mark))
        # force_zip64: the size is not known up front and may pass 4 GiB.
        member = archive.open(zipfile.ZipInfo(self._name, date_time=(1980, 1, 1, 0, 0, 0)), "w", force_zip64=True)
        return archive, member

    def feed(self, chunk: Chunk) -> Chunk:
        self._member.write(chunk)
        return self._out.take()

    def finish(self) -> bytes:
        self._member.close()
        self._archive.close()
        return bytes(self._out.take())

    def sent_length(self, size: int) -> int | None:
        """The same archive around an empty member, plus ``size``: the member's bytes are stored as they are, and
        every header field that holds a size or an offset has a fixed width while each stays under zipfile's
        ZIP64_LIMIT. Past it zipfile adds zip64 extra fields; such an archive is sent with chunked framing."""
        counted = _Drain()
        archive, member = self._open(counted)
        member.close()
        archive.close()
        empty = len(counted.take())
        return empty + size if empty + size < zipfile.ZIP64_LIMIT else None


class UnexpectedTar(ValueError):
    """The stream is not a tar archive this appender can follow (a header that does not parse)."""


class TarAppendStream:
    """Passes an uncompressed tar through and appends ``WATERMARK.txt`` as its last member.

    A tar is a sequence of 512-byte blocks: a header, then the member's data rounded up to whole blocks; a zero
    block marks the end (followed by more zeros up to the record size). The stream is followed header by header;
    everything from the first end-of-archive block on is held back and replaced by the mark member and a new end.
    Memory: at most one incoming chunk plus a block."""

    form = "tar-member"
    media_type = "application/x-tar"

    def __init__(self, filename: str, mark: Watermark) -> None:
        self.filename = filename
        self._mark = mark
        self._pending = b""
        self._data_left = 0  # bytes of the current member's (block-padded) data still to pass through
        self._ended = False
        self._sent = 0

    def feed(self, chunk: Chunk) -> Chunk:
        if self._ended:
            return b""
        chunk = bytes(chunk)  # tarfile parses headers from bytes only (a kit is small: the copy is cheap)
        out: list[bytes] = []
        data = self._pending + chunk if self._pending else chunk
        at = 0
        while at < len(data) and not self._ended:
            if self._data_left:
                step = min(self._data_left, len(data) - at)
                out.append(data[at:at + step])
                at += step
                self._data_left -= step
                continue
            if len(data) - at < BLOCK:
                break
            header = data[at:at + BLOCK]
            if header == bytes(BLOCK):
                self._ended = True
                break
            try:
                info = tarfile.TarInfo.frombuf(header, tarfile.ENCODING, "surrogateescape")
            except tarfile.HeaderError as error:
                raise UnexpectedTar(f"tar header at byte {self._sent}: {error}") from error
            out.append(header)
            at += BLOCK
            # Members with data (files, pax and GNU long-name headers) carry size rounded up to whole blocks.
            self._data_left = -(-info.size // BLOCK) * BLOCK if info.type not in (tarfile.DIRTYPE, tarfile.SYMTYPE,
                                                                                   tarfile.LNKTYPE) else 0
        self._pending = b"" if self._ended else data[at:]
        sent = b"".join(out)
        self._sent += len(sent)
        return sent

    def sent_length(self, size: int) -> int | None:
        return None  # the mark member goes where the archive's end blocks are found, padded to its record size

    def finish(self) -> bytes:
        if not self._ended:
            raise UnexpectedTar("the archive ended without its end-of-archive blocks")
        text = mark_text(self._mark)
        info = tarfile.TarInfo(MARK_FILE)
        info.size, info.mode = len(text), 0o644
        member = info.tobuf(tarfile.PAX_FORMAT) + text + bytes(-len(text) % BLOCK)
        end = member + bytes(2 * BLOCK)
        total = self._sent + len(end)
        return end + bytes(-total % RECORD)
