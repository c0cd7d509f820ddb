"""A normalised, streaming tarball: fixed order, mtime, owner and mode; gzip header without name or time.

Artifacts are hashed while they are copied into the archive, so each input byte is read exactly once and memory
stays flat however large the bundle is. Compression is ISA-L's deflate (python-isal) in a writer thread: plain
gzip output that any gunzip reads, several times zlib's speed, and hashing on this thread overlaps it. Its output
depends only on the input and the level (not on threads or timing), so builds stay byte-identical.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path
from typing import IO, BinaryIO

from isal import igzip_threaded

CHUNK = 1 << 20
# ISA-L level 1: evidence is mostly JSON that compresses well anyway, and large binary artifacts stay near disk speed.
GZIP_LEVEL = 1


class _HashingReader:
    """Feeds every byte tarfile reads from ``source`` into a SHA-256."""

    def __init__(self, source: BinaryIO) -> None:
        self._source = source
        self.digest = hashlib.sha256()
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        self.digest.update(data)
        self.count += len(data)
        return data


class NormalisedTar:
    def __init__(self, path: Path, *, mtime: int, compression: str) -> None:
        self._raw: IO[bytes] = open(path, "wb")  # noqa: SIM115 (closed in close())
        self._gzip: IO[bytes] | None = None
        target: IO[bytes] = self._raw
        if compression == "gzip":
            # Its gzip header carries no file name and mtime 0, like `gzip -n`.
            self._gzip = igzip_threaded.open(self._raw, "wb", compresslevel=GZIP_LEVEL, threads=1)
            target = self._gzip
        elif compression != "none":
            raise ValueError(f"compression must be gzip or none, not {compression!r}")
        # Stream mode ("w|"): the compressor is write-only (no seek or tell), and nothing here needs them.
        self._tar = tarfile.open(fileobj=target, mode="w|", format=tarfile.PAX_FORMAT, bufsize=CHUNK,  # noqa: SIM115
                                 copybufsize=CHUNK)
        self._mtime = mtime

    def _info(self, name: str, size: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = size, self._mtime, 0o644
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.type = tarfile.REGTYPE
        return info

    def add_bytes(self, name: str, data: bytes) -> str:
        self._tar.addfile(self._info(name, len(data)), io.BytesIO(data))
        return hashlib.sha256(data).hexdigest()

    def add_file(self, name: str, source: Path, size: int) -> str:
        """Copy ``source`` into the archive and return its SHA-256; fails if it changed size meanwhile."""
        with open(source, "rb", buffering=0) as handle:
            reader = _HashingReader(handle)
            self._tar.addfile(self._info(name, size), reader)  # type: ignore[arg-type]
            if reader.count != size or handle.read(1):
                raise OSError(f"{source} changed while it was being archived")
        return reader.digest.hexdigest()

    def close(self) -> None:
        self._tar.close()
        if self._gzip is not None:
            self._gzip.close()
        self._raw.close()


def is_safe_member(member: tarfile.TarInfo) -> bool:
    parts = member.name.split("/")
    return member.isreg() and not member.name.startswith("/") and ".." not in parts and "" not in parts
