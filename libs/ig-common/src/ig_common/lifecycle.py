"""Run a service until SIGINT or SIGTERM, then stop its parts in reverse order."""

from __future__ import annotations

import asyncio
import contextlib
import signal


def stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def wait_at_most(event: asyncio.Event, seconds: float) -> bool:
    """Wait until ``event`` is set or ``seconds`` pass; whether it was set.

    asyncio.timeout, not wait_for: Python 3.11's wait_for drops a cancellation that arrives in the same turn as the
    event is set, so a loop cancelled at shutdown just as it was woken ran on (the ledger integrator's did, and a
    test's teardown hung 300 s, 2026-12-07)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
    return event.is_set()
