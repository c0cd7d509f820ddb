"""The ledger against the real PostgreSQL: append-only enforcement, concurrency, proofs, tamper detection."""

from __future__ import annotations

import asyncio
import itertools
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Awaitable

import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from ig_common.db import create_pool, prepare_schema
from ig_evidence.domain import merkle, note, tiles
from ig_evidence.store import MIGRATIONS
from ig_evidence.store.ledger import CheckpointSigner, LedgerError, LedgerStore
from ig_evidence.store.tiles import IntegrationPending

pytestmark = pytest.mark.integration


@pytest.fixture
async def schema(database_url: str) -> AsyncIterator[str]:
    name = f"evidence_t_{uuid.uuid4().hex[:8]}"
    pool = await create_pool(database_url)
    await prepare_schema(pool, name, MIGRATIONS)
    await pool.close()
    yield name


@pytest.fixture
async def ledger(database_url: str, schema: str) -> AsyncIterator[LedgerStore]:
    pool = await create_pool(database_url)
    store = LedgerStore(pool, schema, CheckpointSigner("test.example/ledger", Ed25519PrivateKey.generate()))
    yield store
    await store.close()
    await pool.close()


async def test_appends_chain_and_publish_to_the_outbox(ledger: LedgerStore, database_url: str, schema: str) -> None:
    entries = [(await ledger.append("test.kind", f"s{i}", f"p{i}".encode()))[0] for i in range(5)]
    assert [e.fields.seq for e in entries] == [1, 2, 3, 4, 5]
    assert all(b.fields.prev_hash == a.entry_hash for a, b in itertools.pairwise(entries))
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(f"SELECT topic, ce_subject FROM {schema}.outbox ORDER BY id")
    finally:
        await conn.close()
    assert [(r["topic"], r["ce_subject"]) for r in rows] == [("ig.ledger.entries.v1", str(i)) for i in range(1, 6)]
    report = await ledger.verify()
    assert report.ok and report.entries_checked == 5


async def test_deduplicated_append_returns_the_existing_entry(ledger: LedgerStore) -> None:
    first, existed = await ledger.append("evidence.manifest", "v1", b"core", deduplicate=True)
    again, existed_again = await ledger.append("evidence.manifest", "v1", b"core", deduplicate=True)
    plain, _ = await ledger.append("evidence.manifest", "v1", b"core")
    assert (existed, existed_again) == (False, True) and again.entry_hash == first.entry_hash
    assert plain.fields.seq == first.fields.seq + 1


_ROW = "now(), 'k', 's', ''::bytea, repeat('a', 64)"  # ts, kind, subject, payload, payload_sha256 of a forged row


@pytest.mark.parametrize("statement", [
    "UPDATE {s}.ledger_entries SET subject = 'x' WHERE seq = 1",
    "DELETE FROM {s}.ledger_entries WHERE seq = 1",
    "TRUNCATE {s}.ledger_entries CASCADE",
    "INSERT INTO {s}.ledger_entries VALUES (7, now(), 'k', 's', '', repeat('a', 64), repeat('0', 64), repeat('b', 64))",
    "UPDATE {s}.ledger_checkpoints SET root_hash = 'x'",
    # several rows in one statement (the head is checked once per statement): the second does not link to the first
    "INSERT INTO {s}.ledger_entries SELECT size + 1, " + _ROW + ", head_hash, repeat('c', 64) FROM {s}.ledger_head "
    "UNION ALL SELECT size + 2, " + _ROW + ", repeat('d', 64), repeat('e', 64) FROM {s}.ledger_head",
    # ... or skips a seq, though linked
    "INSERT INTO {s}.ledger_entries SELECT size + 1, " + _ROW + ", head_hash, repeat('c', 64) FROM {s}.ledger_head "
    "UNION ALL SELECT size + 3, " + _ROW + ", repeat('c', 64), repeat('e', 64) FROM {s}.ledger_head",
    # ... or its first row does not link to the head
    "INSERT INTO {s}.ledger_entries SELECT size + 1, " + _ROW + ", repeat('f', 64), repeat('c', 64) "
    "FROM {s}.ledger_head UNION ALL SELECT size + 2, " + _ROW + ", repeat('c', 64), repeat('e', 64) "
    "FROM {s}.ledger_head",
], ids=["update", "delete", "truncate", "gap-insert", "checkpoint-update", "batch-broken-link", "batch-gap",
        "batch-not-from-head"])
async def test_the_database_refuses_to_rewrite_history(ledger: LedgerStore, database_url: str, schema: str,
                                                       statement: str) -> None:
    await ledger.append("test.kind", "s", b"p")
    await ledger.checkpoint()
    conn = await asyncpg.connect(database_url)
    try:
        with pytest.raises(asyncpg.PostgresError, match=r"append-only|does not extend the head"):
            await conn.execute(statement.format(s=schema))
    finally:
        await conn.close()


async def test_a_statement_that_extends_the_head_is_taken_and_moves_the_head_once_to_its_last_row(
        ledger: LedgerStore, database_url: str, schema: str) -> None:
    """The positive control of the batch refusals above: the same shape of statement, linked and gapless, is taken
    and leaves the head at its last row (the check runs once per statement, on all of its rows)."""
    await ledger.append("test.kind", "s", b"p")
    conn = await asyncpg.connect(database_url)
    try:
        size = await conn.fetchval(f"SELECT size FROM {schema}.ledger_head")
        await conn.execute(
            f"INSERT INTO {schema}.ledger_entries SELECT size + 1, now(), 'k', 's', ''::bytea, repeat('a', 64), "
            f"head_hash, repeat('c', 64) FROM {schema}.ledger_head UNION ALL SELECT size + 2, now(), 'k', 's', "
            f"''::bytea, repeat('a', 64), repeat('c', 64), repeat('e', 64) FROM {schema}.ledger_head")
        assert tuple(await conn.fetchrow(f"SELECT size, head_hash FROM {schema}.ledger_head")) == (size + 2, "e" * 64)
    finally:
        await conn.close()


async def test_eight_concurrent_writers_on_separate_pools_never_fork_or_gap(database_url: str, schema: str) -> None:
    stores = []
    for _ in range(8):
        pool = await create_pool(database_url, max_size=2)
        stores.append(LedgerStore(pool, schema, CheckpointSigner("t", Ed25519PrivateKey.generate())))

    async def writer(store: LedgerStore, n: int) -> list[int]:
        return [(await store.append("load", f"w{n}", f"{n}-{i}".encode()))[0].fields.seq for i in range(40)]

    try:
        seqs = await asyncio.gather(*(writer(s, n) for n, s in enumerate(stores)))
        flat = sorted(seq for chunk in seqs for seq in chunk)
        assert flat == list(range(1, 321))
        assert all(chunk == sorted(chunk) for chunk in seqs)
        report = await stores[0].verify()
        assert report.ok and report.entries_checked == 320
    finally:
        for store in stores:
            await store.close()
            await store._pool.close()


async def test_while_several_callers_append_the_writer_waits_for_more_and_an_append_alone_never_waits(
        database_url: str, schema: str) -> None:
    pool = await create_pool(database_url)
    store = LedgerStore(pool, schema, CheckpointSigner("t", Ed25519PrivateKey.generate()), linger_seconds=0.3)
    try:
        started = time.perf_counter()
        for i in range(3):
            await store.append("solo", "s", b"%d" % i)
        assert time.perf_counter() - started < 0.3  # three appends one after another: none of them waited
        await asyncio.gather(*(store.append("pair", "s", b"%d" % i) for i in range(2)))  # two callers at once

        async def arriving(i: int) -> int:
            await asyncio.sleep(0.03 * i)
            return (await store.append("stream", "s", b"%d" % i))[0].fields.seq

        seqs = await asyncio.gather(*(arriving(i) for i in range(5)))
    finally:
        await store.close()
        await pool.close()
    conn = await asyncpg.connect(database_url)
    try:  # xmin names the transaction that inserted a row: the five callers, 30 ms apart, were committed as one
        assert await conn.fetchval(f"SELECT count(DISTINCT xmin::text) FROM {schema}.ledger_entries "
                                   "WHERE seq = ANY($1::bigint[])", seqs) == 1
    finally:
        await conn.close()


async def test_inclusion_and_consistency_proofs_verify_against_signed_checkpoints(ledger: LedgerStore) -> None:
    for i in range(37):
        await ledger.append("proof", "s", str(i).encode(), tenant="alpha")
    size, root, signed, _ = await ledger.checkpoint(20)
    assert size == 20
    checkpoint = note.open_checkpoint(signed, ledger.signer.verifier_key)
    assert checkpoint.root_hash == root and checkpoint.tree_size == 20
    entry = await ledger.get(13, tenant="alpha")
    tree_size, path, proof_root, leaf = await ledger.inclusion_proof(13, 20)
    assert leaf == merkle.leaf_hash(bytes.fromhex(entry.entry_hash))
    assert proof_root == root
    merkle.verify_inclusion(12, tree_size, leaf, path, checkpoint.root_hash)
    big_size, big_root, _, _ = await ledger.checkpoint()
    assert big_size == 37
    merkle.verify_consistency(20, 37, root, big_root, await ledger.consistency_proof(20, 37))
    assert (await ledger.checkpoint(20))[2] == signed  # a checkpoint, once handed out, never changes
    with pytest.raises(LedgerError, match="seq"):
        await ledger.inclusion_proof(38, 0)
    with pytest.raises(LedgerError, match="tree_size"):
        await ledger.checkpoint(99)


@pytest.mark.parametrize(("edit", "first_bad"), [
    ("UPDATE {s}.ledger_entries SET subject = 'forged' WHERE seq = 6", 6),
    ("UPDATE {s}.ledger_entries SET payload = 'forged' WHERE seq = 3", 3),
    ("DELETE FROM {s}.ledger_entries WHERE seq = 9", 9),
    ("DELETE FROM {s}.ledger_entries WHERE seq = 12", 12),
], ids=["subject", "payload", "delete-middle", "delete-last"])
async def test_a_superuser_edit_makes_verify_name_the_first_bad_seq(ledger: LedgerStore, database_url: str,
                                                                    schema: str, edit: str, first_bad: int) -> None:
    for i in range(12):
        await ledger.append("audit", f"s{i}", f"payload {i}".encode())
    conn = await asyncpg.connect(database_url)
    try:
        # Behind the service's back: a superuser switches triggers off for the session and edits a row.
        await conn.execute("SET session_replication_role = replica")
        await conn.execute(edit.format(s=schema))
    finally:
        await conn.close()
    report = await ledger.verify()
    assert not report.ok
    assert report.first_bad_seq == first_bad, report.message


async def test_checkpoints_verify_across_a_key_rotation_and_an_unknown_key_is_not_trusted(
        database_url: str, schema: str) -> None:
    old_key, new_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    origin = "test.example/rotating"
    pool = await create_pool(database_url)
    try:
        before = LedgerStore(pool, schema, CheckpointSigner(origin, old_key))
        for n in range(3):
            await before.append("test.kind", f"s{n}", b"{}")
        size, _, old_note, _ = await before.checkpoint()
        await before.close()
        old_verifier = before.signer.verifier_key

        # Rotated: the new key signs; the old key's verifier key is configured, so the old checkpoint is handed
        # out as it was stored, with the key that signed it.
        after = LedgerStore(pool, schema, CheckpointSigner(origin, new_key), previous_verifier_keys=[old_verifier])
        assert after.verifier_for(old_note) == old_verifier
        assert (await after.checkpoint(size))[2] == old_note
        await after.append("test.kind", "s3", b"{}")
        new_size, _, new_note, _ = await after.checkpoint()
        assert new_size == size + 1 and after.verifier_for(new_note) == after.signer.verifier_key
        note.open_checkpoint(new_note, after.signer.verifier_key)
        with pytest.raises(note.NoteError):
            note.open_checkpoint(new_note, old_verifier)
        await after.close()

        # Rotated without the old verifier key: the old note is not trusted; the size is signed afresh instead.
        forgetful = LedgerStore(pool, schema, CheckpointSigner(origin, new_key))
        assert forgetful.verifier_for(old_note) is None
        _, _, resigned, _ = await forgetful.checkpoint(size)
        assert resigned != old_note and note.open_checkpoint(resigned, forgetful.signer.verifier_key).tree_size == size
        await forgetful.close()
    finally:
        await pool.close()


async def test_no_private_key_is_left_in_the_schema(database_url: str, schema: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval(f"SELECT to_regclass('{schema}.ledger_signing_key')") is None
        columns = await conn.fetch("SELECT table_name, column_name FROM information_schema.columns "
                                   "WHERE table_schema = $1 AND column_name LIKE '%private%'", schema)
        assert columns == []
    finally:
        await conn.close()


async def test_only_heads_are_stored_and_a_past_size_gets_the_same_note_every_time(
        ledger: LedgerStore, database_url: str, schema: str) -> None:
    for n in range(5):
        await ledger.append("test.kind", f"s{n}", b"{}")
    past = (await ledger.checkpoint(3))[2]
    assert (await ledger.checkpoint(3))[2] == past  # deterministic: the same bytes without a stored row
    assert note.open_checkpoint(past, ledger.signer.verifier_key).tree_size == 3
    await ledger.checkpoint()  # the head
    conn = await asyncpg.connect(database_url)
    try:
        stored = [r["tree_size"] for r in await conn.fetch(f"SELECT tree_size FROM {schema}.ledger_checkpoints")]
    finally:
        await conn.close()
    assert stored == [5]


async def test_verify_names_a_stored_checkpoint_whose_root_was_rewritten(
        ledger: LedgerStore, database_url: str, schema: str) -> None:
    for n in range(7):
        await ledger.append("test.kind", f"s{n}", b"{}")
    await ledger.checkpoint()  # stored at the head, 7
    for n in range(4):
        await ledger.append("test.kind", f"t{n}", b"{}")
    await ledger.checkpoint()  # and at 11
    assert (await ledger.verify()).ok
    conn = await asyncpg.connect(database_url)
    try:
        # A superuser switching the append-only triggers off for the session rewrites the root of size 7.
        await conn.execute("SET session_replication_role = replica")
        await conn.execute(f"UPDATE {schema}.ledger_checkpoints SET root_hash = $1 WHERE tree_size = 7", "ab" * 32)
    finally:
        await conn.close()
    report = await ledger.verify()
    assert not report.ok and report.entries_checked == 11
    assert report.first_bad_seq == 7 and report.message == "signed checkpoint of size 7 no longer matches the entries"


async def _append_many(ledger: LedgerStore, count: int) -> None:
    for start in range(0, count, 500):
        batch = range(start, min(count, start + 500))
        await asyncio.gather(*(ledger.append("test.kind", f"s{n}", b"{}") for n in batch))


async def test_the_stored_tiles_are_the_tiles_of_the_entries(ledger: LedgerStore, database_url: str,
                                                             schema: str) -> None:
    await _append_many(ledger, 700)
    size, root = await ledger.tree.wait_for(700)
    conn = await asyncpg.connect(database_url)
    try:
        hashes = [merkle.leaf_hash(bytes.fromhex(r["entry_hash"])) for r in await conn.fetch(
            f"SELECT entry_hash FROM {schema}.ledger_entries ORDER BY seq")]
        stored = {(r["level"], r["idx"]): bytes(r["hashes"]) for r in await conn.fetch(
            f"SELECT level, idx, hashes FROM {schema}.ledger_tiles")}
    finally:
        await conn.close()
    assert (size, root) == (700, merkle.root_from_leaf_hashes(hashes))
    level_one = tiles.perfect_root(hashes[:256]) + tiles.perfect_root(hashes[256:512])
    assert stored == {(0, 0): b"".join(hashes[:256]), (0, 1): b"".join(hashes[256:512]),
                      (0, 2): b"".join(hashes[512:]), (1, 0): level_one}


async def test_a_proof_reads_a_few_tiles_not_every_leaf(ledger: LedgerStore) -> None:
    # Memory flat in n: a proof allocates for the O(log n) tiles it reads (8 KiB each), nothing per leaf. The old
    # per-replica list of every leaf hash took > 1 MB here on its first proof (and kept it).
    await _append_many(ledger, 6000)
    await ledger.tree.wait_for(6000)
    await ledger.inclusion_proof(2, 6000)  # the pool's connections have prepared the statements
    await ledger.consistency_proof(18, 6000)
    fresh = LedgerStore(ledger._pool, ledger._schema, ledger.signer)  # a replica's first proofs

    async def peak_of(*calls: Awaitable[object]) -> int:
        tracemalloc.start()
        try:
            for call in calls:
                await call
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    baseline = await peak_of(fresh.size())  # one round trip (TLS buffers included)
    peak = await peak_of(fresh.inclusion_proof(1, 6000), fresh.consistency_proof(17, 6000), fresh.checkpoint(5999))
    assert peak - baseline < 96 << 10, f"{peak} bytes at the peak of three proofs, {baseline} for one read"


async def test_verify_names_a_tile_rewritten_below_the_service(ledger: LedgerStore, database_url: str,
                                                               schema: str) -> None:
    await _append_many(ledger, 600)
    await ledger.tree.wait_for(600)
    assert (await ledger.verify()).ok
    conn = await asyncpg.connect(database_url)
    try:
        with pytest.raises(asyncpg.PostgresError, match="may only be extended"):  # the trigger, for a superuser too
            await conn.execute(f"UPDATE {schema}.ledger_tiles SET hashes = $1 WHERE level = 1", bytes(64))
        await conn.execute("SET session_replication_role = replica")
        tile = bytes(await conn.fetchval(f"SELECT hashes FROM {schema}.ledger_tiles WHERE level = 0 AND idx = 1"))
        await conn.execute(f"UPDATE {schema}.ledger_tiles SET hashes = $1 WHERE level = 0 AND idx = 1",
                           tile[:32 * 9] + bytes(32) + tile[32 * 10:])
    finally:
        await conn.close()
    report = await ledger.verify()
    assert not report.ok and report.first_bad_seq == 256 + 9 + 1, report.message
    assert report.message == "tile 0/1 does not match the entries (hash 9)"


async def test_a_size_not_yet_integrated_is_waited_for_and_one_beyond_the_head_refused(
        ledger: LedgerStore, database_url: str, schema: str) -> None:
    await _append_many(ledger, 10)
    await ledger.tree.wait_for(10)
    with pytest.raises(LedgerError, match="tree_size: 11 is beyond"):
        await ledger.checkpoint(11)
    blocker = await asyncpg.connect(database_url)
    try:
        # Another replica's integrator holds the tree: this one skips it (SKIP LOCKED) and integrates nothing.
        transaction = blocker.transaction()
        await transaction.start()
        await blocker.execute(f"SELECT size FROM {schema}.ledger_tree FOR UPDATE")
        appended = [e for e, _ in await asyncio.gather(*(ledger.append("test.kind", "late", b"{}") for _ in range(5)))]
        with pytest.raises(IntegrationPending, match="tree_size: 15 is sequenced but not yet integrated"):
            await ledger.tree.wait_for(15, within=0.3)
        waiting = asyncio.ensure_future(ledger.inclusion_proof(appended[-1].fields.seq, 0))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        await transaction.rollback()  # the other integrator is done (without integrating): this one takes over
        size, path, root, leaf = await asyncio.wait_for(waiting, 5)
    finally:
        await blocker.close()
    assert size == 15 and leaf == merkle.leaf_hash(bytes.fromhex(appended[-1].entry_hash))
    merkle.verify_inclusion(14, 15, leaf, path, root)


async def test_a_proof_within_the_seen_tree_reads_tiles_only_and_a_larger_size_is_looked_up(
        ledger: LedgerStore) -> None:
    """One round trip per proof: sizes up to the largest integrated one this replica has seen need no read of the
    sizes (the tree never shrinks). A size beyond it, grown by another replica, is read and proven all the same."""
    await _append_many(ledger, 40)
    await ledger.tree.wait_for(40)
    other = LedgerStore(ledger._pool, ledger._schema, ledger.signer)  # a second replica on the same database
    try:
        sizes_reads = 0
        read_sizes = other.tree.sizes

        async def counted() -> tuple[int, int, bytes]:
            nonlocal sizes_reads
            sizes_reads += 1
            return await read_sizes()

        other.tree.sizes = counted  # type: ignore[method-assign]
        _, root, _, _ = await other.checkpoint(40)
        assert sizes_reads == 1
        for seq, tree_size in [(3, 40), (40, 40), (7, 25)]:
            proven_size, path, proof_root, leaf = await other.inclusion_proof(seq, tree_size)
            expected_root = (await ledger.checkpoint(tree_size))[1]
            assert proof_root == expected_root
            merkle.verify_inclusion(seq - 1, proven_size, leaf, path, expected_root)
        merkle.verify_consistency(25, 40, (await ledger.checkpoint(25))[1], root, await other.consistency_proof(25, 40))
        assert sizes_reads == 1, "a proof within the seen tree read the sizes again"
        await _append_many(ledger, 10)  # the first replica grows the tree
        await ledger.tree.wait_for(50)
        proven_size, path, proof_root, leaf = await other.inclusion_proof(45, 50)
        assert sizes_reads == 2 and proven_size == 50
        merkle.verify_inclusion(44, 50, leaf, path, (await ledger.checkpoint(50))[1])
        with pytest.raises(LedgerError, match="beyond"):
            await other.inclusion_proof(1, 51)
    finally:
        await other.close()
