"""Large buffers are reused, and what is freed beyond a bound goes back to the operating system.

A download passes 1 MiB gRPC messages through the process (gRPC's threads receive them, the event loop sends them
on). Left to itself glibc's mmap threshold moves: while it is under 1 MiB every message is a fresh mapping, paid
for with an mmap, 256 page faults and an munmap; once it has risen, freed memory inside a heap (or a gRPC thread's
arena) mostly stays resident, and the portal's RSS during a 1 GiB download wandered between +31 and +77 MiB from run
to run. Until 2026-12-06 the threshold was fixed at 256 KiB (every message its own mapping): RSS followed what was
held, but py-spy showed the page faults and unmapping as a third of the portal's CPU per downloaded GiB. Now both
ends are fixed: blocks under 4 MiB come from the heaps and are reused (no faults), and a heap's free top beyond
8 MiB is returned. Measured (e2e/test_portal_large_download.py, three runs): RSS +32..+37 MiB for a 1 GiB
download (budget 64 MiB); portal CPU per GiB 1.65-1.86 s -> 1.06-1.56 s (make bench-portal's download phase).
"""

from __future__ import annotations

import ctypes
import ctypes.util

import structlog

log = structlog.get_logger(__name__)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 4 << 20
TRIM_THRESHOLD_BYTES = 8 << 20


def tune_allocator_for_streaming() -> bool:
    """Fix glibc's mmap and trim thresholds (no-op elsewhere); whether both took effect."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # not glibc (musl has no mallopt)
    ok = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    ok = bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)) and ok
    if not ok:
        log.warning("mallopt_refused", mmap_threshold=MMAP_THRESHOLD_BYTES, trim_threshold=TRIM_THRESHOLD_BYTES)
    return ok
