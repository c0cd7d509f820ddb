"""Caps on an uploaded bundle, checked on its bytes as they arrive.

A bundle is a tar archive, gzip-compressed or not. ``UploadCheck`` is fed the upload chunk by chunk: it inflates the
stream in bounded steps (never more than ``STEP`` bytes of output at a time, nothing kept) and walks the tar headers,
so an upload past any cap is refused while it is still arriving, before anything is unpacked or verified, and a gzip
bomb costs a few MiB of memory at most. The caps name the setting that holds them.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

BLOCK = 512
STEP = 1 << 20  # inflated bytes produced per decompress call
GZIP_MAGIC = b"\x1f\x8b"
# The compression-ratio cap applies once this much has been inflated: a small bundle of JSON can compress well.
RATIO_FLOOR = 1 << 20
# tar metadata entries (pax headers, GNU long names) carry a few paths and numbers, never more than this.
MAX_TAR_METADATA = 1 << 20
_METADATA_TYPES = frozenset(b"xgLK")


@dataclass(frozen=True)
class UploadLimits:
    max_bundle_bytes: int = 2 << 30
    max_uncompressed_bytes: int = 8 << 30
    max_member_bytes: int = 2 << 30
    max_members: int = 10_000
    max_compression_ratio: float = 200.0


class CapExceeded(ValueError):
    """The upload passed a cap; ``setting`` names the environment variable that sets it."""

    def __init__(self, setting: str, detail: str) -> None:
        super().__init__(f"{setting}: {detail}")
        self.setting = setting


class MalformedUpload(ValueError):
    """The bytes are not a (gzip-compressed) tar archive."""


class UploadCheck:
    """Feed it the upload's chunks in order, then call ``finish``; each raises at the first cap passed."""

    def __init__(self, limits: UploadLimits) -> None:
        self._limits = limits
        self._compressed = 0
        self._inflated = 0
        self._gzip: bool | None = None
        self._head = b""
        self._inflater: zlib._Decompress | None = None
        self._tar = _TarWalk(limits)

    @property
    def members(self) -> int:
        return self._tar.members

    @property
    def inflated_bytes(self) -> int:
        return self._inflated

    def feed(self, chunk: bytes) -> None:
        self._compressed += len(chunk)
        if self._compressed > self._limits.max_bundle_bytes:
            raise CapExceeded("IG_MAX_BUNDLE_BYTES", f"the upload exceeds {self._limits.max_bundle_bytes} bytes")
        if self._gzip is None:
            # The first two bytes tell gzip from a plain tar; a chunk may bring fewer.
            self._head += chunk
            if len(self._head) < len(GZIP_MAGIC):
                return
            self._gzip = self._head.startswith(GZIP_MAGIC)
            chunk, self._head = self._head, b""
        if not self._gzip:
            self._take(chunk)
            return
        pending = chunk
        while pending:
            if self._inflater is None:
                self._inflater = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
            try:
                out = self._inflater.decompress(pending, STEP)
            except zlib.error as error:
                raise MalformedUpload(f"not a gzip stream ({error})") from error
            self._take(out)
            if self._inflater.eof:
                # A gzip file may hold several members, one after another.
                pending = self._inflater.unused_data
                self._inflater = None
            else:
                # Output past STEP leaves its input here: the next round inflates it, STEP bytes at a time.
                pending = self._inflater.unconsumed_tail

    def finish(self) -> None:
        if self._head:
            raise MalformedUpload("not a tar archive (fewer than two bytes)")
        if self._gzip and self._inflater is not None and not self._inflater.eof:
            raise MalformedUpload("the gzip stream ends early")
        self._tar.finish()

    def _take(self, data: bytes) -> None:
        if not data:
            return
        self._inflated += len(data)
        limits = self._limits
        if self._inflated > limits.max_uncompressed_bytes:
            raise CapExceeded("IG_MAX_UNCOMPRESSED_BYTES",
                              f"the bundle inflates past {limits.max_uncompressed_bytes} bytes")
        if self._gzip and self._inflated > RATIO_FLOOR and \
                self._inflated > limits.max_compression_ratio * max(self._compressed, 1):
            raise CapExceeded("IG_MAX_COMPRESSION_RATIO",
                              f"{self._inflated} bytes inflated from {self._compressed}: more than "
                              f"{limits.max_compression_ratio:g} to 1")
        self._tar.feed(data)


class _TarWalk:
    """Reads tar headers (ustar, pax, GNU) from a byte stream and skips member data by its size."""

    def __init__(self, limits: UploadLimits) -> None:
        self._limits = limits
        self._header = bytearray()
        self._skip = 0  # member data (padded to the block) still to pass over
        self._metadata = bytearray()  # the data of a pax header, to read its size record
        self._collect = 0
        self._pax_size: int | None = None
        self._ended = False
        self.members = 0

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._ended:
                return  # what follows the end-of-archive blocks is ignored, as tar does
            if self._collect:
                taken = view[:self._collect]
                self._metadata += taken
                self._collect -= len(taken)
                self._skip -= len(taken)
                view = view[len(taken):]
                if not self._collect:
                    self._pax_size = _pax_size(bytes(self._metadata))
                continue
            if self._skip:
                passed = min(self._skip, len(view))
                self._skip -= passed
                view = view[passed:]
                continue
            needed = BLOCK - len(self._header)
            self._header += view[:needed]
            view = view[needed:]
            if len(self._header) == BLOCK:
                self._on_header(bytes(self._header))
                self._header.clear()

    def finish(self) -> None:
        if self._header or self._skip or self._collect:
            raise MalformedUpload("the tar archive ends inside a member")

    def _on_header(self, block: bytes) -> None:
        if block == bytes(BLOCK):
            self._ended = True
            return
        if not _checksum_ok(block):
            raise MalformedUpload("not a tar archive (a header's checksum is wrong)")
        size = _number(block[124:136])
        kind = block[156:157]
        padded = -(-size // BLOCK) * BLOCK
        if kind and kind[0] in _METADATA_TYPES:
            if size > MAX_TAR_METADATA:
                raise CapExceeded("IG_MAX_MEMBER_BYTES", f"a tar metadata entry of {size} bytes")
            self._skip = padded
            if kind == b"x":
                self._metadata.clear()
                self._collect = size
            return
        if self._pax_size is not None:
            size, self._pax_size = self._pax_size, None
            padded = -(-size // BLOCK) * BLOCK
        self.members += 1
        limits = self._limits
        if self.members > limits.max_members:
            raise CapExceeded("IG_MAX_MEMBERS", f"more than {limits.max_members} members")
        if size > limits.max_member_bytes:
            name = block[:100].split(b"\0", 1)[0].decode("utf-8", "replace")
            raise CapExceeded("IG_MAX_MEMBER_BYTES", f"{name}: {size} bytes, more than {limits.max_member_bytes}")
        self._skip = padded


def _checksum_ok(block: bytes) -> bool:
    try:
        stored = int(block[148:156].split(b"\0", 1)[0].strip() or b"0", 8)
    except ValueError:
        return False
    unsigned = sum(block[:148]) + 8 * 32 + sum(block[156:])
    return stored == unsigned


def _number(field: bytes) -> int:
    if field[0] & 0x80:  # base-256, for sizes past 8 GiB
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    try:
        return int(text or b"0", 8)
    except ValueError as error:
        raise MalformedUpload(f"not a tar archive (size field {text!r})") from error


def _pax_size(records: bytes) -> int | None:
    """The ``size`` record of a pax extended header ("<length> size=<n>\\n"), if it has one."""
    for line in records.split(b"\n"):
        _, _, record = line.partition(b" ")
        key, _, value = record.partition(b"=")
        if key == b"size":
            try:
                return int(value)
            except ValueError as error:
                raise MalformedUpload(f"not a tar archive (pax size {value!r})") from error
    return None
