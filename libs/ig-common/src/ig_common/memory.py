"""Large buffers are reused, and what is freed beyond a bound goes back to the operating system.

The services that stream artifacts (the evidence service's GetArtifact, the audit portal's downloads) pass 1 MiB
buffers through the process: a file read, a protobuf message, gRPC's copy of it, each allocated and freed per
chunk, often in different threads. Left to itself glibc's mmap threshold moves: while it is under a chunk's size
every buffer is a fresh mapping, paid for with an mmap, 256 page faults (each page cleared) and an munmap; once it
has risen, freed memory inside a heap mostly stays resident. Which of the two a process is in depended on its
history, so its CPU per streamed GiB did too: the evidence service spent 0.8-1.1 s per GiB in some downloads and
1.9-2.4 s in others (perf stat: ~2,000-7,000 page faults per GiB against ~509,000, two fresh buffers per MiB), and
the portal's RSS during a 1 GiB download wandered between +31 and +77 MiB from run to run.

Both ends are fixed here: blocks under 4 MiB come from the heaps and are reused (no faults), and a heap's free top
beyond 8 MiB is returned. And there is one heap: glibc gives each thread that allocates its own arena (up to eight
per core), and gRPC's threads, which receive the chunks, took turns. Each arena kept ~10 MiB of freed chunks of its
own, so the portal's first 1 GiB download grew its RSS by +24 to +47 MiB (+72 MiB once in CI, past the test's
64 MiB budget); with one arena, +10 to +15 MiB in seven runs at the same throughput (some with a client reading at
~100 MiB/s, some beside two busy processes). Figures: services/audit-portal/README.md (the 1 GiB download).
"""

from __future__ import annotations

import ctypes
import ctypes.util

import structlog

log = structlog.get_logger(__name__)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 4 << 20
TRIM_THRESHOLD_BYTES = 8 << 20
# glibc fixes the arena limit when a second thread first allocates, so this must run before any thread starts.
ARENAS = 1


def tune_allocator_for_streaming() -> bool:
    """Fix glibc's mmap and trim thresholds and its arena count (no-op elsewhere); whether all took effect.

    Called first thing in ``main``, before any thread is started."""
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
    ok = bool(mallopt(M_ARENA_MAX, ARENAS)) and ok
    if not ok:
        log.warning("mallopt_refused", mmap_threshold=MMAP_THRESHOLD_BYTES, trim_threshold=TRIM_THRESHOLD_BYTES,
                    arenas=ARENAS)
    return ok
