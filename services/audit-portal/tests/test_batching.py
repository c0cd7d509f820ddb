"""The batched writers: concurrent callers share one write, each gets its own result, a failed write fails every
caller of that batch (so the guard answers 503) and the writer goes on serving later callers."""

from __future__ import annotations

import asyncio

import pytest
from ig_portal.store.batching import Batcher


class Recorder:
    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.fail_next = False
        self.release = asyncio.Event()

    async def write(self, items: list[int]) -> list[int]:
        self.batches.append(items)
        await self.release.wait()
        if self.fail_next:
            self.fail_next = False
            raise OSError("database gone")
        return [item * 10 for item in items]


async def test_waiting_callers_share_one_write_and_each_gets_its_own_result() -> None:
    recorder = Recorder()
    batcher: Batcher[int, int] = Batcher("test", recorder.write)
    writer = asyncio.create_task(batcher.run())
    try:
        first = asyncio.create_task(batcher.submit(1))
        await asyncio.sleep(0.01)  # the first write is under way; the next callers queue behind it
        rest = [asyncio.create_task(batcher.submit(n)) for n in (2, 3, 4)]
        await asyncio.sleep(0.01)
        recorder.release.set()
        assert await first == 10
        assert await asyncio.gather(*rest) == [20, 30, 40]
        assert recorder.batches == [[1], [2, 3, 4]]
    finally:
        writer.cancel()


async def test_a_failed_write_fails_its_callers_and_the_next_batch_still_runs() -> None:
    recorder = Recorder()
    recorder.fail_next = True
    recorder.release.set()
    batcher: Batcher[int, int] = Batcher("test", recorder.write)
    writer = asyncio.create_task(batcher.run())
    try:
        failed = await asyncio.gather(batcher.submit(1), batcher.submit(2), return_exceptions=True)
        assert all(isinstance(outcome, OSError) for outcome in failed)
        assert await batcher.submit(3) == 30
    finally:
        writer.cancel()


async def test_a_caller_that_gives_up_does_not_break_the_batch() -> None:
    recorder = Recorder()
    batcher: Batcher[int, int] = Batcher("test", recorder.write)
    writer = asyncio.create_task(batcher.run())
    try:
        gone = asyncio.create_task(batcher.submit(1))
        stays = asyncio.create_task(batcher.submit(2))
        await asyncio.sleep(0.01)
        gone.cancel()
        recorder.release.set()
        assert await stays == 20
        with pytest.raises(asyncio.CancelledError):
            await gone
    finally:
        writer.cancel()
