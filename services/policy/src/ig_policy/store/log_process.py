"""The decision log in a helper process: the service hands each decision over and goes on answering.

Building the records, masking, the PostgreSQL writes and the outbox relay to Kafka cost CPU and event-loop turns,
and sharing the loop with the requests they were a large part of the decisions' p95 (``make bench-policy``). The
writer process (``python -m ig_policy.log_writer``, started and watched from here) does all of that with the
same settings; this process only gathers (input, decision) pairs for ``flush_interval`` and writes them as one
frame to a socket pair.

Nothing is lost silently. A decision this process cannot hand over - no writer running, or the writer so far
behind that ``max_buffered_bytes`` wait unsent - counts in ``ig_policy_decision_log_dropped_total`` at once, and
the next writer records the gap in ``decision_log_gaps``. When a writer dies, the decisions it had received but
not yet written or filtered count the same way; a new writer starts after ``restart_backoff``. At shutdown the
writer gets the last decisions and the end of its stream, writes what it holds, publishes and exits.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import structlog
from ig_common.events.outbox import OUTBOX_BACKLOG, OUTBOX_FAILURES, OUTBOX_PUBLISHED

from ig_policy.domain.losses import LossTally
from ig_policy.domain.model import Decision
from ig_policy.store.decision_log import LOG_DROPPED, LOG_FAILURES, LOG_FILTERED, LOG_QUEUE, LOG_WRITTEN
from ig_policy.store.handoff import Decisions, MetricMirror, Status, encode, read_message

log = structlog.get_logger(__name__)

# What the writer counts and this process shows on its /metrics (one scrape target per pod).
MIRRORED_COUNTERS = (LOG_WRITTEN, LOG_FILTERED, LOG_DROPPED, LOG_FAILURES, OUTBOX_PUBLISHED, OUTBOX_FAILURES)
MIRRORED_GAUGES = (LOG_QUEUE, OUTBOX_BACKLOG)
WRITER_COMMAND = (sys.executable, "-m", "ig_policy.log_writer")
_MAX_RESTART_BACKOFF_S = 30.0


class WriterUnavailable(RuntimeError):
    pass


class DecisionLogProcess:
    def __init__(self, *, flush_interval: float = 0.05, max_buffered_bytes: int = 32 * 1024 * 1024,
                 restart_backoff: float = 1.0, stop_timeout: float = 30.0,
                 command: Sequence[str] = WRITER_COMMAND) -> None:
        self._flush_interval = flush_interval
        self._max_buffered_bytes = max_buffered_bytes
        self._restart_backoff = restart_backoff
        self._stop_timeout = stop_timeout
        self._command = tuple(command)
        self._mirror = MetricMirror(MIRRORED_COUNTERS, MIRRORED_GAUGES)
        self._pending: list[tuple[Any, Decision]] = []
        self._flush_handle: asyncio.TimerHandle | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._ready = asyncio.Event()
        self._sent = 0
        self._settled = 0
        self._losses = LossTally()
        self.restarts = 0

    # -- the request path --------------------------------------------------------------------------------------

    def submit(self, policy_input: Any, decision: Decision) -> bool:
        """Hand a decision to the writer (within ``flush_interval``); False, and counted, when it cannot be."""
        writer = self._writer
        if writer is None or writer.is_closing() or (
                writer.transport.get_write_buffer_size() > self._max_buffered_bytes):
            self._count_lost(1)
            return False
        self._pending.append((policy_input, decision))
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_later(self._flush_interval, self._flush)
        return True

    def _flush(self) -> None:
        self._flush_handle = None
        batch, self._pending = self._pending, []
        writer = self._writer
        if writer is None or writer.is_closing():
            self._count_lost(len(batch))
            return
        gap = self._losses.pending
        if gap is not None:
            writer.write(encode(gap))
            self._losses.settle(gap)
        if batch:
            writer.write(encode(Decisions(batch)))
            self._sent += len(batch)

    def _count_lost(self, count: int) -> None:
        if self._losses.add(count, datetime.now(UTC)):
            log.warning("decision_log_handoff_lost", decisions=count, writer_running=self._writer is not None)
        LOG_DROPPED.inc(count)

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
        """Keep a writer running until cancelled (shutdown); then hand over the rest and wait for it to finish."""
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
        self._sent = self._settled = 0
        self._mirror.restart()

    async def _follow_writer(self) -> bool:
        """Take the writer's reports until its end of the socket closes; whether it reported at all."""
        assert self._reader is not None
        reported = False
        while (message := await read_message(self._reader)) is not None:
            if isinstance(message, Status):
                self._settled = message.settled
                self._mirror.apply(message.totals)
                self._ready.set()
                reported = True
        return reported

    async def _reap(self) -> int | None:
        """The writer is gone or going: whatever it had not settled is lost and counted."""
        writer, process, self._writer = self._writer, self._process, None
        if writer is not None:
            writer.close()
        self._count_lost(self._sent - self._settled)
        if process is None:
            return None
        try:
            async with asyncio.timeout(self._stop_timeout):
                return await process.wait()
        except TimeoutError:
            process.kill()
            return await process.wait()

    async def _shut_down(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self._flush()
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
