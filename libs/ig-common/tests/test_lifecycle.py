"""wait_at_most, the wait every service's background loop sleeps in between rounds."""

from __future__ import annotations

import asyncio

import pytest
from ig_common.lifecycle import wait_at_most


@pytest.mark.parametrize(("set_after", "within", "expected"), [
    (0.0, 1.0, True),    # already set: returns at once
    (0.02, 1.0, True),   # set while waiting
    (None, 0.05, False),  # never set: the time runs out
])
async def test_the_wait_ends_at_the_event_or_at_the_time(set_after: float | None, within: float,
                                                         expected: bool) -> None:
    event = asyncio.Event()
    if set_after is not None:
        asyncio.get_running_loop().call_later(set_after, event.set)
    started = asyncio.get_running_loop().time()
    assert await wait_at_most(event, within) is expected
    assert asyncio.get_running_loop().time() - started < within + 0.5


async def test_a_cancellation_that_arrives_with_the_wake_up_still_cancels() -> None:
    """The event set and the waiter cancelled in the same turn of the loop (a shutdown as work arrives): the loop
    around the wait must end. With asyncio.wait_for, Python 3.11 returned as if woken and the loop ran on."""
    event, rounds = asyncio.Event(), 0

    async def loop_until_cancelled() -> None:
        nonlocal rounds
        while True:
            await wait_at_most(event, 10)
            event.clear()
            rounds += 1

    waiter = asyncio.ensure_future(loop_until_cancelled())
    await asyncio.sleep(0.02)
    event.set()
    waiter.cancel()
    done, _ = await asyncio.wait({waiter}, timeout=2)
    assert waiter in done and waiter.cancelled(), f"the loop ran on ({rounds} rounds) after its cancellation"
