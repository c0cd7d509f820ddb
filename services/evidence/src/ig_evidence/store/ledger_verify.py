"""The ledger's Verify: one pass over every entry in seq order, in flat memory."""

from __future__ import annotations

import asyncpg

from ig_evidence.domain import merkle
from ig_evidence.domain.chain import ChainReport, ChainWalker
from ig_evidence.store.ledger_rows import COLUMNS, row_to_entry
from ig_evidence.store.tiles import TileAudit

VERIFY_PAGE = 10_240  # 40 full level-0 tiles: Verify compares the stored tiles page by page


async def verify_ledger(pool: asyncpg.Pool, schema: str) -> ChainReport:
    """Re-read every entry (no cache), re-hash the chain, and re-check every stored checkpoint's root, every
    stored tile and the root the tiles were integrated to.

    One pass in seq order, in flat memory: each entry extends a compact range of the Merkle tree, whose root at
    a stored checkpoint's size must be that checkpoint's root (no root is recomputed from all the leaves), and
    the tiles rebuilt page by page from the entries must be the stored ones."""
    walker = ChainWalker()
    tree = merkle.CompactRange()
    async with pool.acquire() as conn:
        checkpoints = [(r["tree_size"], r["root_hash"]) for r in await conn.fetch(
            f"SELECT tree_size, root_hash FROM {schema}.ledger_checkpoints ORDER BY tree_size")]
        pending = list(reversed(checkpoints))  # the smallest size last, popped first
        tiled = await conn.fetchrow(f"SELECT size, root_hash FROM {schema}.ledger_tree WHERE singleton")
        tiled_root = merkle.EMPTY_ROOT if tiled["size"] == 0 else None  # from the entries, at the tiled size
        audit = TileAudit(conn, schema, tiled["size"])
        mismatch: int | None = None
        last = 0
        while True:
            rows = await conn.fetch(f"SELECT {COLUMNS} FROM {schema}.ledger_entries WHERE seq > $1 "
                                    "ORDER BY seq LIMIT $2", last, VERIFY_PAGE)
            leaves: list[bytes] = []
            for row in rows:
                entry = row_to_entry(row)
                if not walker.feed(entry):
                    await audit.feed(leaves)
                    break
                leaves.append(merkle.leaf_hash(bytes.fromhex(entry.entry_hash)))
                tree.append(leaves[-1])
                while pending and pending[-1][0] == tree.size:
                    if tree.root().hex() != pending.pop()[1] and mismatch is None:
                        mismatch = tree.size
                if tree.size == tiled["size"]:
                    tiled_root = tree.root()
            else:
                await audit.feed(leaves)
                if rows:
                    last = rows[-1]["seq"]
                    continue
            break
        report = walker.report()
        head = await conn.fetchrow(f"SELECT size, head_hash FROM {schema}.ledger_head WHERE singleton")
    if not report.ok:
        return report
    if head["size"] != report.entries_checked or (report.entries_checked and head["head_hash"] !=
                                                    walker.prev_hash):
        return ChainReport(False, report.entries_checked, report.entries_checked + 1,
                           f"ledger head (size {head['size']}) does not match the {report.entries_checked} "
                           "entries found: entries were removed")
    bad_size = mismatch or (pending[-1][0] if pending else None)
    if bad_size is not None:
        return ChainReport(False, report.entries_checked, min(bad_size, report.entries_checked),
                           f"signed checkpoint of size {bad_size} no longer matches the entries")
    if audit.first_bad_seq:
        return ChainReport(False, report.entries_checked, audit.first_bad_seq, audit.message)
    if tiled_root is None or tiled_root != bytes(tiled["root_hash"]):
        return ChainReport(False, report.entries_checked, min(tiled["size"], report.entries_checked),
                           f"the tiles' root of size {tiled['size']} does not match the entries")
    return report
