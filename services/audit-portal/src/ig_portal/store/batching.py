"""Group commit for per-request writes: what accumulates while one batch is written goes out as the next batch.

Every portal request writes twice to PostgreSQL (a rate-limit take, an outbox row). One statement per request
costs a pooled connection, a round trip, the pool's reset query on release and, for logged tables, a WAL flush;
with 200 clients the requests queued for the pool's ten connections behind one another. A single writer task
turns N waiting requests into one statement and one commit, and under no load a batch is simply one request.
Each caller still waits for its own result and gets the batch's exception if the write failed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from prometheus_client import Histogram

In = TypeVar("In")
Out = TypeVar("Out")

BATCH_SIZE = Histogram("ig_portal_write_batch_size", "Requests served per batched PostgreSQL write", ["write"],
                       buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500))


@dataclass
class _Waiting(Generic[In, Out]):
    item: In
    done: asyncio.Future[Out]


class Batcher(Generic[In, Out]):
    def __init__(self, name: str, write: Callable[[list[In]], Awaitable[Sequence[Out]]],
                 max_batch: int = 500) -> None:
        self.name = name
        self._write = write
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_Waiting[In, Out]] = asyncio.Queue()

    async def submit(self, item: In) -> Out:
        """The result of ``item`` once the batch holding it has been written (needs ``run`` to be running)."""
        done: asyncio.Future[Out] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Waiting(item, done))
        return await done

    async def run(self) -> None:
        """The writer loop (a service background task); a failed batch fails its callers, not the loop."""
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                results = await self._write([waiting.item for waiting in batch])
            except Exception as error:
                for waiting in batch:
                    if not waiting.done.done():
                        waiting.done.set_exception(error)
                continue
            BATCH_SIZE.labels(self.name).observe(len(batch))
            for waiting, result in zip(batch, results, strict=True):
                if not waiting.done.done():
                    waiting.done.set_result(result)
