"""PDF stamping in a worker process that is killed at its deadline.

Stamping parses and rewrites the whole document with pypdf: CPU work whose cost a crafted PDF controls. In a thread
it could not be stopped (Python threads cannot be killed), so it runs in a child process forked from a forkserver
that has the watermark code preloaded; past ``timeout_seconds`` the child gets SIGKILL, which really stops it, and
its address space is capped. The caller then falls back to the zip form. Documents over ``max_bytes`` are never
stamped (they stream as zip): stamping needs the whole file in memory, so the cap is what bounds that memory.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import resource
from multiprocessing.connection import Connection

import structlog
from prometheus_client import Counter

from ig_portal.domain import watermark

log = structlog.get_logger(__name__)
OUTCOMES = Counter("ig_portal_pdf_stamp_total", "PDF stamping attempts by outcome", ["outcome"])
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(["ig_portal.api.pdf_stamping"])
# The child's address space: the document, pypdf's object graph and the rewritten copy, with room to spare.
CHILD_MEMORY_BYTES = 1 << 30


def _stamp_in_child(conn: Connection, name: str, content: bytes, mark: watermark.Watermark) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY_BYTES, CHILD_MEMORY_BYTES))
    try:
        stamped = watermark.stamp_pdf(name, content, mark)
    except BaseException:
        stamped = b""
    conn.send_bytes(stamped)
    conn.close()


def _run(name: str, content: bytes, mark: watermark.Watermark, timeout: float) -> tuple[bytes, str]:
    receiver, sender = _CONTEXT.Pipe(duplex=False)
    child = _CONTEXT.Process(target=_stamp_in_child, args=(sender, name, content, mark), daemon=True)
    child.start()
    sender.close()
    try:
        if not receiver.poll(timeout):
            return b"", "timeout"
        stamped = receiver.recv_bytes()
        return stamped, "stamped" if stamped else "failed"
    except (EOFError, OSError):
        return b"", "failed"  # the child died (e.g. over its memory cap) without answering
    finally:
        receiver.close()
        if child.is_alive():
            child.kill()
        child.join(5)


class PdfStamper:
    def __init__(self, max_bytes: int, timeout_seconds: float, concurrency: int = 2) -> None:
        self.max_bytes = max_bytes
        self.timeout_seconds = timeout_seconds
        self._slots = asyncio.Semaphore(concurrency)

    def accepts(self, size: int) -> bool:
        return 0 < size <= self.max_bytes

    async def stamp(self, name: str, content: bytes, mark: watermark.Watermark) -> bytes | None:
        """The stamped PDF, or None when it could not be stamped in time (the caller falls back to zip)."""
        if not self.accepts(len(content)):
            OUTCOMES.labels("too_large").inc()
            return None
        async with self._slots:
            stamped, outcome = await asyncio.to_thread(_run, name, content, mark, self.timeout_seconds)
        OUTCOMES.labels(outcome).inc()
        if outcome != "stamped":
            log.warning("pdf_not_stamped", outcome=outcome, name=name, size=len(content))
            return None
        return stamped
