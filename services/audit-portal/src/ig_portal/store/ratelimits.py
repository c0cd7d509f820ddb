"""Token buckets in PostgreSQL, so every replica draws from the same buckets.

One statement per request: refill, take and report happen under the row lock of a single upsert, so two
replicas can never both spend the last token. The arithmetic is ``ig_portal.domain.ratelimit.take``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from ig_portal.domain.ratelimit import BucketSpec, retry_after

# Tokens after refilling for the time since the last take (capped at capacity); see domain.ratelimit.take.
_REFILL = ("LEAST(EXCLUDED.capacity, b.tokens + EXTRACT(EPOCH FROM statement_timestamp() - b.updated_at)"
           " * EXCLUDED.rate)")


@dataclass(frozen=True)
class Denied:
    bucket: str
    retry_after_seconds: int


class RateLimitStore:
    def __init__(self, pool: asyncpg.Pool, schema: str) -> None:
        self.pool = pool
        self.schema = schema

    async def take(self, buckets: Sequence[tuple[str, BucketSpec]]) -> Denied | None:
        """Take one token from each bucket; the first bucket that had none is returned."""
        names = [name for name, _ in buckets]
        capacities = [spec.capacity for _, spec in buckets]
        rates = [spec.refill_per_second for _, spec in buckets]
        rows = await self.pool.fetch(
            f"""
            INSERT INTO {self.schema}.rate_buckets AS b (bucket, capacity, rate, tokens, granted, updated_at)
            SELECT bucket, capacity, rate, capacity - 1, true, statement_timestamp()
            FROM unnest($1::text[], $2::float8[], $3::float8[]) AS w(bucket, capacity, rate)
            ORDER BY bucket  -- a fixed lock order: concurrent requests never deadlock
            ON CONFLICT (bucket) DO UPDATE SET
                granted = {_REFILL} >= 1,
                tokens = {_REFILL} - CASE WHEN {_REFILL} >= 1 THEN 1 ELSE 0 END,
                capacity = EXCLUDED.capacity, rate = EXCLUDED.rate, updated_at = statement_timestamp()
            RETURNING bucket, granted, tokens""", names, capacities, rates)
        specs = dict(buckets)
        for row in sorted(rows, key=lambda r: names.index(r["bucket"])):
            if not row["granted"]:
                return Denied(row["bucket"], retry_after(specs[row["bucket"]], row["tokens"]))
        return None
