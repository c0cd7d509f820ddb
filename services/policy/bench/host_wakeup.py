"""What one wake-up costs on this host: a ping-pong over a socket pair between two processes, one CPU and two.

Every request crosses processes and threads that sleep between requests (gateway -> gRPC core -> the service's
loop -> OPA and back), and each crossing waits for the kernel, and under a hypervisor the host, to wake the other
side. Raw OPA pays two such wake-ups per decision and ``Decide`` several more, so the overhead the benchmark
measures scales with this figure. Measuring it in the same run lets a reader compare runs on different hosts.

Run as a script (a fresh process, so forking is safe): prints JSON, round-trip microseconds per placement.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time

ROUND_TRIPS = 1_000
# Long enough for the partner to block in recv and its CPU to go idle: requests arrive at ~100/s, not back to back.
PAUSE_S = 0.002


def percentile(ordered: list[float], p: float) -> float:
    """Nearest rank: the sample below which a share ``p`` of the sorted samples lie."""
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def round_trip_us(here: int, there: int, count: int = ROUND_TRIPS) -> dict[str, float]:
    """p50/p95/p99 of a one-byte ping-pong, this process pinned to CPU ``here`` and its partner to ``there``."""
    ours, theirs = socket.socketpair()
    child = os.fork()
    if child == 0:
        # The child must never return into the caller's stack, whatever happens: it ends here.
        try:
            ours.close()
            os.sched_setaffinity(0, {there})
            for _ in range(count):
                if not theirs.recv(1):
                    break
                theirs.send(b"o")
        finally:
            os._exit(0)
    theirs.close()
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {here})
    samples = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            ours.send(b"i")
            ours.recv(1)
            samples.append((time.perf_counter() - started) * 1e6)
            time.sleep(PAUSE_S)
    finally:
        os.sched_setaffinity(0, allowed)
        ours.close()  # a partner still waiting in recv sees the end and exits
        os.waitpid(child, 0)
    samples.sort()
    return {f"p{round(p * 100)}_us": round(percentile(samples, p), 1) for p in (0.50, 0.95, 0.99)}


def wakeup_figures(count: int = ROUND_TRIPS) -> dict[str, dict[str, float]]:
    cpus = sorted(os.sched_getaffinity(0))
    figures = {"same_cpu": round_trip_us(cpus[0], cpus[0], count)}
    if len(cpus) > 1:
        figures["cross_cpu"] = round_trip_us(cpus[0], cpus[1], count)
    return figures


if __name__ == "__main__":
    print(json.dumps(wakeup_figures(int(sys.argv[1]) if len(sys.argv) > 1 else ROUND_TRIPS)))
