"""The decision log's write-ahead log, the service's side: every decision is on disk before it is answered.

Decisions go to segment files (``<sequence>.wal``) under one directory that outlives the processes: the writer
process tails them, writes PostgreSQL and acknowledges (``ig_policy.store.wal_tail``), so a writer killed, or a
service killed between answering and the writer's insert, loses nothing - the next writer reads on from the last
acknowledgement.

Group commit: ``append`` adds a decision to the open batch and returns the batch's future; one task writes each
batch with one ``write`` and one ``fdatasync`` and then resolves it, while the next batch fills. An answer waits
for its batch's fsync (``fsync=False``: only for the ``write``, which a killed process survives and a machine
crash may not). The service never appends to a segment it did not start: at start it opens a new one, so a
torn tail left by a crash is only ever at the end of an old segment, where the reader counts it.

Bounded disk: past ``max_bytes`` not yet acknowledged by the writer ``append`` raises ``WalFull`` and the decision
is refused (UNAVAILABLE): fail closed, no decision answered without its record. The writer deletes a segment once
it is acknowledged and a newer one exists, so the directory holds at most ``max_bytes`` plus one segment.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import time
from dataclasses import dataclass
from pathlib import Path

import structlog
from prometheus_client import Counter, Gauge, Histogram

from ig_policy.domain.losses import DecisionLogUnavailable
from ig_policy.domain.wal_format import frame_batch

log = structlog.get_logger(__name__)

SEGMENT_SUFFIX = ".wal"
SERVICE_LOCK = "service.lock"
ACKNOWLEDGED = "acknowledged"
WAL_SYNC_SECONDS = Histogram(
    "ig_policy_decision_log_wal_sync_seconds", "One group commit to the WAL: write and fdatasync of a batch",
    buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5),
)
WAL_BATCH_RECORDS = Histogram("ig_policy_decision_log_wal_batch_records", "Decisions per WAL group commit",
                              buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 1024))
WAL_BYTES = Gauge("ig_policy_decision_log_wal_bytes", "WAL bytes the writer has not acknowledged yet")
WAL_SEGMENTS = Gauge("ig_policy_decision_log_wal_segments", "WAL segment files on disk")
WAL_REFUSED = Counter("ig_policy_decision_log_wal_refused_total",
                      "Decisions refused (UNAVAILABLE) because the WAL was full or could not be written", ["reason"])
# The directory's size is read again this often (the writer deletes segments behind the service's back).
_RESCAN_S = 0.5


class WalFull(DecisionLogUnavailable):
    pass


@dataclass(frozen=True, order=True)
class Position:
    """A place in the WAL: a segment and a byte offset in it."""

    segment: int
    offset: int


def acknowledged(directory: Path) -> Position:
    """Up to where the writer has the WAL in PostgreSQL (the start, before its first acknowledgement)."""
    try:
        segment, offset = (directory / ACKNOWLEDGED).read_text().split()
        return Position(int(segment), int(offset))
    except FileNotFoundError:
        return Position(0, 0)
    except ValueError as error:
        raise RuntimeError(f"{directory / ACKNOWLEDGED} is not '<segment> <offset>': {error}") from None


def segment_path(directory: Path, sequence: int) -> Path:
    return directory / f"{sequence:020d}{SEGMENT_SUFFIX}"


def segments(directory: Path) -> list[tuple[int, Path]]:
    """The segment files of ``directory``, oldest first."""
    found = []
    for path in directory.iterdir():
        if path.suffix == SEGMENT_SUFFIX and path.stem.isdigit():
            found.append((int(path.stem), path))
    return sorted(found)


def unacknowledged_bytes(directory: Path) -> int:
    """Bytes of ``directory``'s segments the writer has not acknowledged (0 once everything is in PostgreSQL)."""
    ack = acknowledged(directory)
    pending = 0
    for sequence, path in segments(directory):
        try:
            size = path.stat().st_size
        except FileNotFoundError:  # acknowledged and deleted meanwhile
            continue
        if sequence >= ack.segment:
            pending += size - (ack.offset if sequence == ack.segment else 0)
    return pending


def fsync_directory(directory: Path) -> None:
    """A file created or renamed survives a machine crash only once its directory entry is synced too."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class WalSettings:
    directory: Path
    segment_bytes: int = 64 * 1024 * 1024
    max_bytes: int = 1024 * 1024 * 1024
    fsync: bool = True


class WriteAheadLog:
    def __init__(self, settings: WalSettings) -> None:
        self._settings = settings
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self._sequence = 0
        self._segment_size = 0
        self._unacknowledged = 0
        self._scanned_at = 0.0
        self._open: list[bytes] = []
        self._open_bytes = 0
        self._batch_done: asyncio.Future[None] | None = None
        self._wake = asyncio.Event()
        self._committing = asyncio.Lock()  # one batch at a time, in order; close() waits for the one in flight
        self._closed = False

    @property
    def directory(self) -> Path:
        return self._settings.directory

    @property
    def is_open(self) -> bool:
        return self._fd is not None

    def open(self) -> None:
        """Take the directory (one service per WAL) and start a new segment after every existing one."""
        directory = self._settings.directory
        directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(directory / SERVICE_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"IG_DECISION_LOG_WAL_DIR {directory} is in use by another policy service "
                               "process") from None
        existing = segments(directory)
        last = max([s for s, _ in existing] + [acknowledged(directory).segment])
        self._rescan()
        if existing:
            log.info("decision_log_wal_found", directory=str(directory), segments=len(existing),
                     bytes=self._unacknowledged)
        self._start_segment(last + 1)

    def append(self, payload: bytes) -> asyncio.Future[None]:
        """Add one record to the open batch; the future resolves once the batch is written (and synced)."""
        if self._closed or self._fd is None:
            WAL_REFUSED.labels("closed").inc()
            raise DecisionLogUnavailable("the decision log's WAL is closed")
        if self._over_cap(len(payload)) and time.monotonic() - self._scanned_at > _RESCAN_S:
            self._rescan()  # the writer may have deleted segments since
        if self._over_cap(len(payload)):
            WAL_REFUSED.labels("full").inc()
            raise WalFull(f"the decision log's WAL holds {self._unacknowledged} bytes not yet written, its cap "
                          f"(IG_DECISION_LOG_WAL_MAX_MB) is {self._settings.max_bytes}")
        if self._batch_done is None:
            self._batch_done = asyncio.get_running_loop().create_future()
        self._open.append(payload)
        self._open_bytes += len(payload) + 8
        self._wake.set()
        return self._batch_done

    def _over_cap(self, adding: int) -> bool:
        return self._unacknowledged + self._open_bytes + adding > self._settings.max_bytes

    async def run(self) -> None:
        """Group commits until ``close``: each batch written and synced while the next one fills."""
        while not (self._closed and not self._open):
            await self._wake.wait()
            self._wake.clear()
            await self.commit()

    async def commit(self) -> None:
        async with self._committing:
            await self._commit_open_batch()

    async def _commit_open_batch(self) -> None:
        batch, done = self._open, self._batch_done
        self._open, self._open_bytes, self._batch_done = [], 0, None
        if not batch or done is None or self._fd is None:
            return
        started = time.perf_counter()
        try:
            await asyncio.to_thread(self._write, frame_batch(batch))
        except Exception as error:
            WAL_REFUSED.labels("write_failed").inc(len(batch))
            log.error("decision_log_wal_write_failed", records=len(batch), error=str(error))
            done.set_exception(DecisionLogUnavailable(f"the decision log's WAL could not be written: {error}"))
            done.exception()  # retrieved here: a batch whose callers all went away must not warn
            # What reached the file of that batch is a torn tail now: the next batch goes to a new segment.
            try:
                await asyncio.to_thread(self._start_segment, self._sequence + 1)
            except OSError as again:
                log.error("decision_log_wal_unusable", error=str(again))
            return
        WAL_SYNC_SECONDS.observe(time.perf_counter() - started)
        WAL_BATCH_RECORDS.observe(len(batch))
        done.set_result(None)

    async def close(self) -> None:
        """Commit what is open and close the segment; appends are refused from here on."""
        self._closed = True
        await self.commit()
        async with self._committing:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        self._wake.set()

    # -- in a worker thread ------------------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self._segment_size >= self._settings.segment_bytes:
            self._start_segment(self._sequence + 1)
        assert self._fd is not None
        written = 0
        while written < len(data):  # a regular file may take less than asked (e.g. the disk filling up)
            written += os.write(self._fd, data[written:])
        if self._settings.fsync:
            os.fdatasync(self._fd)
        self._segment_size += len(data)
        self._unacknowledged += len(data)
        if time.monotonic() - self._scanned_at > _RESCAN_S:
            self._rescan()

    def _start_segment(self, sequence: int) -> None:
        if self._fd is not None:
            os.close(self._fd)
        path = segment_path(self._settings.directory, sequence)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        if self._settings.fsync:
            fsync_directory(self._settings.directory)
        self._sequence, self._segment_size = sequence, 0
        WAL_SEGMENTS.inc()

    def _rescan(self) -> None:
        """Bytes not acknowledged yet (the cap's measure) and the segments on disk, read from the directory."""
        ack = acknowledged(self._settings.directory)
        pending = files = 0
        for sequence, path in segments(self._settings.directory):
            try:
                size = path.stat().st_size
            except FileNotFoundError:  # acknowledged and deleted meanwhile
                continue
            files += 1
            if sequence >= ack.segment:
                pending += size - (ack.offset if sequence == ack.segment else 0)
        self._unacknowledged = pending
        self._scanned_at = time.monotonic()
        WAL_BYTES.set(pending)
        WAL_SEGMENTS.set(files)
