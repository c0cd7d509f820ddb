"""The ledger's tiled Merkle tree in PostgreSQL: batched integration, roots and proofs from O(log n) tiles.

Appends are sequenced into ``ledger_entries`` as before; an integrator (one at a time across every replica: the
``ledger_tree`` row lock, taken with SKIP LOCKED so the others do not queue) then extends the tiles from the
integrated size to the head in one transaction per batch and records the new size and root. Integrating a batch
reads the new entries' hashes and the right-edge tiles (one per level), nothing more; a proof or a past root reads
the few tiles domain/tiles.py names. Nothing of the tree is cached per replica (only the largest integrated size
and its root it has seen): memory stays flat in the ledger's size.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

import asyncpg
import structlog
from asyncpg.pool import PoolConnectionProxy
from ig_common.lifecycle import wait_at_most
from prometheus_client import Counter, Histogram

from ig_evidence.domain import merkle, tiles
from ig_evidence.domain.tiles import TileKey

log = structlog.get_logger(__name__)

INTEGRATED = Counter("ig_ledger_integrated_entries_total", "Ledger entries integrated into the tiled tree")
INTEGRATION_BATCH = Histogram("ig_ledger_integration_batch_size", "Entries per tile integration transaction",
                              buckets=(1, 8, 64, 256, 1024, 4096, 16384))
MAX_INTEGRATION_BATCH = 16_384  # entries per integration transaction: bounds its memory (about 2 MiB of hashes)
# After a wake-up the integrator lingers this long, so that one transaction integrates the appends of several
# group commits (the batching of Tessera's integrator) instead of competing with them for commits.
LINGER_SECONDS = 0.005
IDLE_POLL_SECONDS = 1.0  # an integrator with nothing to do still looks now and then (another replica's appends)
WAIT_POLL_SECONDS = 0.05
DEFAULT_WAIT_SECONDS = 10.0


Reader = asyncpg.Connection | asyncpg.Pool | PoolConnectionProxy


async def fetch_tiles(conn: Reader, schema: str, keys: Iterable[TileKey]) -> dict[TileKey, bytes]:
    """The stored tiles of ``keys`` (one query); absent ones are left out."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    rows = await conn.fetch(
        f"""SELECT t.level, t.idx, t.hashes FROM {schema}.ledger_tiles t
            JOIN unnest($1::smallint[], $2::bigint[]) AS w(level, idx) USING (level, idx)""",
        [k[0] for k in wanted], [k[1] for k in wanted])
    return {(r["level"], r["idx"]): bytes(r["hashes"]) for r in rows}


class IntegrationPending(RuntimeError):
    """A size that is sequenced but not yet integrated did not get integrated within the wait."""


class TiledTree:
    def __init__(self, pool: asyncpg.Pool, schema: str) -> None:
        self._pool = pool
        self._schema = schema
        self._wake = asyncio.Event()
        self._advanced = asyncio.Event()  # replaced after each integration: waiters hold the one they saw
        self._integrator: asyncio.Task[None] | None = None
        # The largest integrated (size, root) this replica has read or written. The tree only moves forward (the
        # ledger_tree trigger) and a size's root never changes, so a proof or checkpoint at or below it needs no
        # read of the sizes: one database round trip per proof instead of two. Two numbers, not a cache of the tree.
        self._seen: tuple[int, bytes] = (0, merkle.EMPTY_ROOT)

    # -- integration ---------------------------------------------------------------------------------------------
    def wake(self) -> None:
        """New entries were sequenced: integrate them (starts the integrator when nobody did)."""
        self._wake.set()
        if self._integrator is None or self._integrator.done():
            self._integrator = asyncio.ensure_future(self._integrate_forever())

    async def serve_integration(self) -> None:
        """The integrator loop, run as a service background task."""
        current = asyncio.current_task()
        assert current is not None
        self._integrator = current
        await self._integrate_forever()

    async def close(self) -> None:
        if self._integrator is not None:
            self._integrator.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._integrator

    async def _integrate_forever(self) -> None:
        while True:
            await wait_at_most(self._wake, IDLE_POLL_SECONDS)
            await asyncio.sleep(LINGER_SECONDS)
            self._wake.clear()
            try:
                while await self.integrate_once() == MAX_INTEGRATION_BATCH:
                    pass
            except Exception as error:  # logged and retried on the next wake-up; waiters time out meanwhile
                log.error("ledger_integration_failed", error=str(error))
                await asyncio.sleep(WAIT_POLL_SECONDS)

    async def integrate_once(self, limit: int = MAX_INTEGRATION_BATCH) -> int:
        """Integrate up to ``limit`` sequenced entries; returns how many (0: none pending, or another integrator
        holds the tree)."""
        s = self._schema
        async with self._pool.acquire() as conn, conn.transaction():
            size = await conn.fetchval(f"SELECT {s}.ledger_lock_tree()")
            if size is None:
                return 0
            # Tiles are a function of the (durably committed) entries: if a crash loses this commit, the next
            # integrator rebuilds the very same tiles, so it need not wait for its WAL flush.
            await conn.execute("SET LOCAL synchronous_commit = off")
            rows = await conn.fetch(f"SELECT seq, entry_hash FROM {s}.ledger_entries WHERE seq > $1 AND seq <= $2 "
                                    "ORDER BY seq", size, size + limit)
            if not rows:
                return 0
            if rows[-1]["seq"] != size + len(rows):  # committed entries are a prefix (the head lock); never guess
                raise RuntimeError(f"ledger entries after {size} are not contiguous; not integrating them")
            leaves = [merkle.leaf_hash(bytes.fromhex(r["entry_hash"])) for r in rows]
            new_size = size + len(leaves)
            # One read: the right edge to extend, and whichever older tiles the new root needs.
            stored = await self._fetch(conn, {*tiles.right_edge(size), *tiles.tiles_for_ranges([(0, new_size)])})
            changed = tiles.extend(size, stored, leaves)
            root = tiles.range_hash(0, new_size, {**stored, **changed})
            keys = sorted(changed)
            await conn.execute(f"SELECT {s}.ledger_integrate($1, $2, $3, $4::smallint[], $5::bigint[], $6::bytea[])",
                               size, new_size, root, [k[0] for k in keys], [k[1] for k in keys],
                               [changed[k] for k in keys])
        self._saw(new_size, root)
        INTEGRATED.inc(len(leaves))
        INTEGRATION_BATCH.observe(len(leaves))
        advanced, self._advanced = self._advanced, asyncio.Event()
        advanced.set()
        return len(leaves)

    # -- reads ---------------------------------------------------------------------------------------------------
    @property
    def seen(self) -> tuple[int, bytes]:
        """The largest integrated (size, root) this replica has seen: every size up to it is integrated."""
        return self._seen

    def _saw(self, size: int, root: bytes) -> None:
        if size > self._seen[0]:
            self._seen = (size, root)

    async def integrated(self) -> tuple[int, bytes]:
        row = await self._pool.fetchrow(f"SELECT size, root_hash FROM {self._schema}.ledger_tree WHERE singleton")
        assert row is not None  # migration 0009 inserts the one row, and nothing may delete it
        self._saw(int(row["size"]), bytes(row["root_hash"]))
        return int(row["size"]), bytes(row["root_hash"])

    async def sizes(self) -> tuple[int, int, bytes]:
        """(sequenced head size, integrated size, integrated root) in one read."""
        row = await self._pool.fetchrow(f"SELECT h.size AS head, t.size AS integrated, t.root_hash "
                                        f"FROM {self._schema}.ledger_head h, {self._schema}.ledger_tree t")
        assert row is not None
        self._saw(int(row["integrated"]), bytes(row["root_hash"]))
        return int(row["head"]), int(row["integrated"]), bytes(row["root_hash"])

    async def wait_for(self, size: int, within: float = DEFAULT_WAIT_SECONDS) -> tuple[int, bytes]:
        """The integrated (size, root) once it covers ``size`` (sequenced already: the caller checked)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            advanced = self._advanced
            current = await self.integrated()
            if current[0] >= size:
                return current
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise IntegrationPending(f"tree_size: {size} is sequenced but not yet integrated "
                                         f"(integrated: {current[0]}); retry shortly")
            self.wake()
            await wait_at_most(advanced, min(remaining, WAIT_POLL_SECONDS))

    async def _fetch(self, conn: Reader, keys: Iterable[TileKey]) -> dict[TileKey, bytes]:
        return await fetch_tiles(conn, self._schema, keys)

    async def hashes(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        """MTH of each aligned range of an integrated tree, from the tiles they need (one query)."""
        found = await self._fetch(self._pool, tiles.tiles_for_ranges(ranges))
        return [tiles.range_hash(start, end, found) for start, end in ranges]

    async def root(self, size: int) -> bytes:
        return (await self.hashes([(0, size)]))[0]

    async def inclusion(self, index: int, size: int, root: bytes | None = None) -> tuple[list[bytes], bytes, bytes]:
        """(proof, root of ``size``, leaf hash) for leaf ``index``, from one read of O(log n) tiles; ``root``, when
        the caller knows it (the integrated size's), is not recomputed."""
        ranges = [*tiles.inclusion_ranges(index, size), (index, index + 1), *([] if root else [(0, size)])]
        found = await self._fetch(self._pool, tiles.tiles_for_ranges(ranges))
        digests = [tiles.range_hash(start, end, found) for start, end in ranges]
        if root is None:
            root = digests.pop()
        leaf = digests.pop()
        return digests, root, leaf

    async def consistency(self, first_size: int, size: int) -> list[bytes]:
        return await self.hashes(tiles.consistency_ranges(first_size, size))

    async def tile(self, level: int, index: int, width: int) -> bytes | None:
        """The tile's first ``width`` hashes, when the integrated tree has that many (None: not (yet) served)."""
        size, _ = await self.integrated()
        if tiles.hashes_at_level(size, level) < index * tiles.TILE_WIDTH + width:
            return None
        found = await self._fetch(self._pool, [(level, index)])
        data = found.get((level, index), b"")[: width * tiles.HASH_SIZE]
        return data if len(data) == width * tiles.HASH_SIZE else None

    async def entry_bundle(self, index: int, width: int) -> bytes | None:
        """The entry bundle: each integrated entry's data (its 32-byte entry hash, the bytes its leaf hashes)
        with a big-endian uint16 length prefix."""
        size, _ = await self.integrated()
        first = index * tiles.TILE_WIDTH
        if size < first + width:
            return None
        rows = await self._pool.fetch(f"SELECT entry_hash FROM {self._schema}.ledger_entries WHERE seq > $1 AND "
                                      "seq <= $2 ORDER BY seq", first, first + width)
        if len(rows) != width:
            return None
        return b"".join(b"\x00\x20" + bytes.fromhex(r["entry_hash"]) for r in rows)


class TileAudit:
    """Verify's check of the stored tiles: rebuilds them from the entries' leaf hashes as Verify streams them (one
    right edge, a few KiB, in memory) and compares each with the stored tile, up to the integrated size."""

    def __init__(self, conn: asyncpg.Connection, schema: str, integrated_size: int) -> None:
        self._conn = conn
        self._schema = schema
        self._integrated = integrated_size
        self._size = 0
        self._edge: dict[TileKey, bytes] = {}
        self.first_bad_seq = 0
        self.message = ""

    async def feed(self, leaves: list[bytes]) -> None:
        """The next leaf hashes, in order."""
        if self.first_bad_seq or self._size >= self._integrated or not leaves:
            return
        leaves = leaves[: self._integrated - self._size]
        expected = tiles.extend(self._size, self._edge, leaves)
        new_size = self._size + len(leaves)
        stored = await fetch_tiles(self._conn, self._schema, expected)
        for (level, index), want in sorted(expected.items()):
            got = stored.get((level, index), b"")[: len(want)]
            if got != want:
                bad_hash = next(i for i in range(0, len(want), tiles.HASH_SIZE)
                                if got[i:i + tiles.HASH_SIZE] != want[i:i + tiles.HASH_SIZE]) // tiles.HASH_SIZE
                seq = ((index * tiles.TILE_WIDTH + bad_hash) << (tiles.TILE_HEIGHT * level)) + 1
                if not self.first_bad_seq or seq < self.first_bad_seq:
                    self.first_bad_seq = seq
                    self.message = f"tile {level}/{index} does not match the entries (hash {bad_hash})"
        merged = {**self._edge, **expected}
        self._edge = {key: merged[key] for key in tiles.right_edge(new_size)}
        self._size = new_size
