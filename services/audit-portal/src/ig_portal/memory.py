"""Large buffers go back to the operating system as soon as they are freed.

A download passes 1 MiB gRPC messages through the process (gRPC's threads receive them, the event loop sends them
on). glibc serves a freed 1 MiB block's successors from its heaps once its dynamic mmap threshold has risen past
1 MiB, and memory freed inside a heap (or a gRPC thread's arena) mostly stays resident: the portal's RSS during a
1 GiB download then wandered between +31 and +77 MiB from run to run. With a fixed threshold every block of 256 KiB
or more is its own mapping, unmapped on free, so RSS follows what is really held (a few chunks per download); the
cost, an mmap and page faults per MiB, is well under a millisecond per MiB.
"""

from __future__ import annotations

import ctypes
import ctypes.util

import structlog

log = structlog.get_logger(__name__)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 256 * 1024


def return_large_buffers_promptly() -> bool:
    """Fix glibc's mmap threshold (no-op elsewhere); whether it took effect."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # not glibc (musl has no mallopt)
    ok = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    if not ok:
        log.warning("mallopt_refused", threshold=MMAP_THRESHOLD_BYTES)
    return ok
