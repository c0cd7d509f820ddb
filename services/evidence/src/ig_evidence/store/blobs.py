"""Content-addressed blob store on a filesystem: ``<root>/sha256/<2 hex>/<64 hex>``, written temp-then-rename."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

CHUNK = 1 << 20


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "tmp").mkdir(parents=True, exist_ok=True)
        (root / "sha256").mkdir(parents=True, exist_ok=True)

    def path_of(self, sha256: str) -> Path:
        if len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a sha256 digest: {sha256!r}")
        return self.root / "sha256" / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path_of(sha256).is_file()

    def temp_file(self) -> tuple[IO[bytes], Path]:
        handle, name = tempfile.mkstemp(dir=self.root / "tmp", prefix="upload-")
        return os.fdopen(handle, "wb"), Path(name)

    def adopt(self, temp: Path, sha256: str) -> Path:
        """Move a fully written temp file to its content address (a no-op if that content is already there)."""
        target = self.path_of(sha256)
        if target.is_file():
            temp.unlink(missing_ok=True)
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(temp, 0o444)
        os.replace(temp, target)
        return target

    def put_stream(self, source: IO[bytes], limit: int | None = None) -> tuple[str, int]:
        out, temp = self.temp_file()
        digest, size = hashlib.sha256(), 0
        try:
            with out:
                while chunk := source.read(CHUNK):
                    size += len(chunk)
                    if limit is not None and size > limit:
                        raise ValueError(f"blob exceeds {limit} bytes")
                    digest.update(chunk)
                    out.write(chunk)
            sha256 = digest.hexdigest()
            self.adopt(temp, sha256)
            return sha256, size
        except BaseException:
            temp.unlink(missing_ok=True)
            raise

    def read_chunks(self, sha256: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        with open(self.path_of(sha256), "rb") as handle:
            while chunk := handle.read(chunk_size):
                yield chunk
