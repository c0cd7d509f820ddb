"""Token buckets in PostgreSQL, so every replica draws from the same buckets.

Takes are batched (``store.batching``): the requests waiting while the previous batch ran go into one
statement that, per bucket, refills, gives out as many tokens as were asked and are available, and reports
how many it gave, all under the row lock of a single upsert; two replicas can never both spend the last token.
Before, every request updated the same hot rows (its address, its user) in its own statement, so 200 clients
queued on those row locks and on the pool. The arithmetic is ``ig_portal.domain.ratelimit``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from ig_portal.domain.ratelimit import BucketSpec, demand, first_refusals, retry_after
from ig_portal.store.batching import Batcher

# Tokens after refilling for the time since the last take (capped at capacity); see domain.ratelimit.take.
_REFILL = ("LEAST(EXCLUDED.capacity, b.tokens + EXTRACT(EPOCH FROM statement_timestamp() - b.updated_at)"
           " * EXCLUDED.rate)")
# Tokens given out: as many as asked (carried in EXCLUDED.granted_count) and whole tokens available.
_GIVEN = f"GREATEST(0, LEAST(EXCLUDED.granted_count, floor({_REFILL})))"

Ask = Sequence[tuple[str, BucketSpec]]
MAX_BATCH = 8


@dataclass(frozen=True)
class Denied:
    bucket: str
    retry_after_seconds: int


class RateLimitStore:
    def __init__(self, pool: asyncpg.Pool, schema: str) -> None:
        self.pool = pool
        self.schema = schema
        # Small batches keep replicas fair: a burst on one replica cannot take a shared bucket's last tokens in
        # one statement ahead of requests already waiting on another replica (statements interleave on the row).
        self._batches: Batcher[Ask, Denied | None] = Batcher("rate_limit", self._take_batch, max_batch=MAX_BATCH)

    async def take(self, buckets: Ask) -> Denied | None:
        """Take one token from each bucket; the first bucket that had none is returned."""
        return await self._batches.submit(buckets)

    async def run(self) -> None:
        await self._batches.run()

    async def _take_batch(self, asks: list[Ask]) -> list[Denied | None]:
        specs = {name: spec for ask in asks for name, spec in ask}
        names = [[name for name, _ in ask] for ask in asks]
        asked = demand(names)
        buckets = sorted(asked)
        rows = await self.pool.fetch(
            f"""
            INSERT INTO {self.schema}.rate_buckets AS b
                (bucket, capacity, rate, tokens, granted, granted_count, updated_at)
            SELECT bucket, capacity, rate, capacity - LEAST(asked, floor(capacity)), floor(capacity) >= 1,
                   GREATEST(0, LEAST(asked, floor(capacity))), statement_timestamp()
            FROM unnest($1::text[], $2::float8[], $3::float8[], $4::int[]) AS w(bucket, capacity, rate, asked)
            ORDER BY bucket  -- a fixed lock order: concurrent batches (other replicas) never deadlock
            ON CONFLICT (bucket) DO UPDATE SET
                granted_count = {_GIVEN},
                granted = {_GIVEN} >= 1,
                tokens = {_REFILL} - {_GIVEN},
                capacity = EXCLUDED.capacity, rate = EXCLUDED.rate, updated_at = statement_timestamp()
            RETURNING bucket, granted_count, tokens""",
            buckets, [specs[b].capacity for b in buckets], [specs[b].refill_per_second for b in buckets],
            [asked[b] for b in buckets])
        given = {row["bucket"]: int(row["granted_count"]) for row in rows}
        left = {row["bucket"]: float(row["tokens"]) for row in rows}
        return [None if refused is None else Denied(refused, retry_after(specs[refused], left[refused]))
                for refused in first_refusals(names, given)]
