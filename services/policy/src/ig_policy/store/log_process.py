"""The decision log in a helper process: the service puts each decision in a write-ahead log and answers.

Building the records, masking, the PostgreSQL writes and the outbox relay to Kafka cost CPU and event-loop turns,
and sharing the loop with the requests they were a large part of the decisions' p95 (``make bench-policy``). The
writer process (``python -m ig_policy.log_writer``, started and watched from here) does all of that with the
same settings. The hand-over is the WAL (``ig_policy.store.wal``): a decision is answered once its batch is
written and synced there, and the writer reads it from there - so a writer that dies, or a service killed
between answering and the writer's insert, loses nothing: the next writer reads on from the last acknowledgement.

The socket pair between the two processes carries only the writer's reports (its metric totals, shown on this
process's /metrics) and, at shutdown, the end of the stream: the writer then takes what the WAL holds and exits.
When a writer dies a new one starts after ``restart_backoff``.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Sequence
from typing import Any

import structlog
from ig_common.events.outbox import OUTBOX_BACKLOG, OUTBOX_FAILURES, OUTBOX_PUBLISHED

from ig_policy.domain.model import Decision
from ig_policy.domain.wal_entry import encode_decision
from ig_policy.store.decision_log import LOG_DROPPED, LOG_FAILURES, LOG_FILTERED, LOG_QUEUE, LOG_WRITTEN
from ig_policy.store.handoff import MetricMirror, Status, read_message
from ig_policy.store.wal import WalSettings, WriteAheadLog
from ig_policy.store.wal_consumer import WAL_GAP_RECORDS, WAL_PENDING_BYTES, WAL_REPLAYED, WAL_UNCOUNTABLE

log = structlog.get_logger(__name__)

# What the writer counts and this process shows on its /metrics (one scrape target per pod).
MIRRORED_COUNTERS = (LOG_WRITTEN, LOG_FILTERED, LOG_DROPPED, LOG_FAILURES, OUTBOX_PUBLISHED, OUTBOX_FAILURES,
                     WAL_REPLAYED, WAL_GAP_RECORDS, WAL_UNCOUNTABLE)
MIRRORED_GAUGES = (LOG_QUEUE, OUTBOX_BACKLOG, WAL_PENDING_BYTES)
WRITER_COMMAND = (sys.executable, "-m", "ig_policy.log_writer")
_MAX_RESTART_BACKOFF_S = 30.0


class WriterUnavailable(RuntimeError):
    pass


class DecisionLogProcess:
    def __init__(self, wal: WalSettings, *, restart_backoff: float = 1.0, stop_timeout: float = 30.0,
                 command: Sequence[str] = WRITER_COMMAND) -> None:
        self._wal = WriteAheadLog(wal)
        self._restart_backoff = restart_backoff
        self._stop_timeout = stop_timeout
        self._command = tuple(command)
        self._mirror = MetricMirror(MIRRORED_COUNTERS, MIRRORED_GAUGES)
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._ready = asyncio.Event()
        self.restarts = 0

    # -- the request path --------------------------------------------------------------------------------------

    async def record(self, policy_input: Any, decision: Decision) -> None:
        """Back once the decision is in the WAL (its batch synced); DecisionLogUnavailable when it cannot be."""
        await self._wal.append(encode_decision(policy_input, decision))

    def open_wal(self) -> None:
        """Take the WAL directory now (start-up fails at once, naming the setting, when another service has it)."""
        self._wal.open()

    # -- the writer's life -------------------------------------------------------------------------------------

    @property
    def writer_pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None and process.returncode is None else None

    async def wait_ready(self, within_s: float) -> None:
        """Until the first writer reports (its database pool is open); start-up fails if it never does."""
        try:
            async with asyncio.timeout(within_s):
                await self._ready.wait()
        except TimeoutError:
            raise WriterUnavailable(f"the decision-log writer did not start within {within_s:g} s") from None

    async def run(self) -> None:
        """Keep the WAL open and a writer running until cancelled (shutdown); then close the WAL and wait for the
        writer to take the rest."""
        if not self._wal.is_open:
            await asyncio.to_thread(self._wal.open)
        committing = asyncio.create_task(self._wal.run())
        backoff = self._restart_backoff
        try:
            while True:
                await self._start_writer()
                reported = await self._follow_writer()
                status = await self._reap()
                self.restarts += 1
                # A writer that never reported (database unreachable at its start) is retried less and less often.
                backoff = self._restart_backoff if reported else min(backoff * 2, _MAX_RESTART_BACKOFF_S)
                log.error("decision_log_writer_exited", status=status, restart_in_s=backoff)
                await asyncio.sleep(backoff)
        except asyncio.CancelledError:
            await self._wal.close()
            await committing
            await self._shut_down()
            raise

    async def _start_writer(self) -> None:
        ours, theirs = socket.socketpair()
        try:
            self._process = await asyncio.create_subprocess_exec(
                *self._command, str(theirs.fileno()), pass_fds=(theirs.fileno(),))
        finally:
            theirs.close()
        self._reader, self._writer = await asyncio.open_connection(sock=ours)
        self._mirror.restart()

    async def _follow_writer(self) -> bool:
        """Take the writer's reports until its end of the socket closes; whether it reported at all."""
        assert self._reader is not None
        reported = False
        while (message := await read_message(self._reader)) is not None:
            if isinstance(message, Status):
                self._mirror.apply(message.totals)
                self._ready.set()
                reported = True
        return reported

    async def _reap(self) -> int | None:
        """The writer is gone or going (what it had not acknowledged stays in the WAL for the next one)."""
        writer, process, self._writer = self._writer, self._process, None
        if writer is not None:
            writer.close()
        if process is None:
            return None
        try:
            async with asyncio.timeout(self._stop_timeout):
                return await process.wait()
        except TimeoutError:
            process.kill()
            return await process.wait()

    async def _shut_down(self) -> None:
        writer = self._writer
        if writer is None or writer.is_closing():
            return
        writer.write_eof()
        try:
            async with asyncio.timeout(self._stop_timeout):
                await self._follow_writer()
        except TimeoutError:
            log.error("decision_log_writer_slow_to_stop", timeout_s=self._stop_timeout)
        await self._reap()
