"""The decision log's write-ahead log, the writer's side: read on from the last acknowledgement, acknowledge
what PostgreSQL holds, delete what is acknowledged.

The acknowledgement is a file (``acknowledged``: ``<segment> <offset>``) replaced atomically and synced after each
write to PostgreSQL; a writer that dies between the insert and the acknowledgement reads those records again and
the inserts do nothing (the decision id is the key). One writer at a time: a new one waits for the lock the
previous one (say, of a service killed a moment ago) still holds.

A batch the data ends inside of is still being written while its segment is the newest; once a newer segment
exists (the service started one, after a restart or a failed write) it is torn, and its records are counted as a
gap (``ig_policy.domain.wal_format``).
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass, field
from pathlib import Path

from ig_policy.domain.wal_format import parse
from ig_policy.store.wal import ACKNOWLEDGED, Position, acknowledged, fsync_directory, segments

WRITER_LOCK = "writer.lock"


@dataclass(frozen=True)
class TornBatch:
    """Records a segment announced and did not deliver; ``source`` names the place, the same on every read."""

    source: str
    records: int
    countable: bool


@dataclass
class Stretch:
    payloads: list[bytes] = field(default_factory=list)
    torn: list[TornBatch] = field(default_factory=list)
    end: Position = field(default_factory=lambda: Position(0, 0))

    @property
    def empty(self) -> bool:
        return not self.payloads and not self.torn


class WalTail:
    def __init__(self, directory: Path, *, fsync: bool = True) -> None:
        self._directory = directory
        self._fsync = fsync
        self._lock_fd: int | None = None
        self.cursor = acknowledged(directory)

    def lock(self) -> None:
        """Wait until no other writer reads this WAL (blocking: call it in a thread)."""
        self._directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self._directory / WRITER_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        self.cursor = acknowledged(self._directory)  # the previous writer may have moved it

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def end(self) -> Position:
        """Where the WAL ends now (what a writer starting now has to replay lies before it)."""
        found = segments(self._directory)
        if not found:
            return self.cursor
        sequence, path = found[-1]
        return Position(sequence, path.stat().st_size)

    def pending_bytes(self) -> int:
        total = 0
        for sequence, path in segments(self._directory):
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            total += size - (self.cursor.offset if sequence == self.cursor.segment else 0)
        return total

    def read(self, max_records: int) -> Stretch:
        """Whole batches from the cursor on, about ``max_records`` records (fewer when that is all there is)."""
        stretch = Stretch()
        while len(stretch.payloads) < max_records:
            listing = dict(segments(self._directory))
            later = sorted(s for s in listing if s > self.cursor.segment)
            if self.cursor.segment not in listing:
                if not later:
                    break
                self.cursor = Position(later[0], 0)
                continue
            data = _read_from(listing[self.cursor.segment], self.cursor.offset)
            parsed = parse(data, final=bool(later))
            taken_to = 0
            for batch_end, payload in parsed.records:
                if len(stretch.payloads) >= max_records and batch_end != taken_to:
                    break
                stretch.payloads.append(payload)
                taken_to = batch_end
            if taken_to and taken_to < parsed.consumed:
                self.cursor = Position(self.cursor.segment, self.cursor.offset + taken_to)
                break
            if parsed.torn_records or parsed.torn_unknown:
                end = self.cursor.offset + parsed.consumed
                stretch.torn.append(TornBatch(f"wal {self.cursor.segment:020d} torn before {end}",
                                              parsed.torn_records, not parsed.torn_unknown))
            self.cursor = Position(self.cursor.segment, self.cursor.offset + parsed.consumed)
            if not later or parsed.incomplete:
                break
            self.cursor = Position(later[0], 0)
        stretch.end = self.cursor
        return stretch

    def acknowledge(self, position: Position) -> None:
        """PostgreSQL holds everything before ``position``: record it, then delete the segments before it."""
        temporary = self._directory / f"{ACKNOWLEDGED}.tmp"
        with temporary.open("w") as file:
            file.write(f"{position.segment} {position.offset}\n")
            file.flush()
            if self._fsync:
                os.fsync(file.fileno())
        os.replace(temporary, self._directory / ACKNOWLEDGED)
        if self._fsync:
            fsync_directory(self._directory)
        for sequence, path in segments(self._directory):
            if sequence < position.segment:
                path.unlink(missing_ok=True)


def _read_from(path: Path, offset: int) -> bytes:
    try:
        with path.open("rb") as file:
            file.seek(offset)
            return file.read()
    except FileNotFoundError:
        return b""
