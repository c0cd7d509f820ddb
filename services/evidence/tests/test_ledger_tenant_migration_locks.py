"""Migrations 0011 and 0012 on a live ledger: while each runs (its transaction open), may an append and an entry
read still take their locks on ledger_entries? 0012, the backfill that rewrites old rows, must never stop them;
0011 holds the table only for catalog changes and its index build (bench_migration_0011.py measures how long)."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from ig_common.db import create_pool, prepare_schema
from ig_evidence.domain.chain import next_entry
from ig_evidence.store import MIGRATIONS

APPEND_LOCK = "ROW EXCLUSIVE"  # what INSERT (ledger_append) takes
READ_LOCK = "ACCESS SHARE"  # what Get, List and Verify's SELECTs take


@pytest.fixture
async def schema_before_0011(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[asyncpg.Pool, str]]:
    before = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, before, ignore=shutil.ignore_patterns("0011_*", "0012_*"))
    schema = f"evidence_l_{uuid.uuid4().hex[:8]}"
    pool = await create_pool(database_url, max_size=3)
    try:
        await prepare_schema(pool, schema, before)
        yield pool, schema
    finally:
        await pool.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await pool.close()


def _migration(prefix: str, schema: str) -> str:
    (path,) = MIGRATIONS.glob(f"{prefix}_*.sql")
    return path.read_text(encoding="utf-8").replace("{schema}", schema).replace("{runtime_role}", "CURRENT_USER")


async def _can_lock(pool: asyncpg.Pool, schema: str, mode: str) -> bool:
    async with pool.acquire() as conn, conn.transaction():
        try:
            await conn.execute(f"LOCK TABLE {schema}.ledger_entries IN {mode} MODE NOWAIT")
            return True
        except asyncpg.LockNotAvailableError:
            return False


async def test_the_backfill_leaves_appends_and_reads_free_while_it_runs(
        schema_before_0011: tuple[asyncpg.Pool, str]) -> None:
    pool, schema = schema_before_0011
    async with pool.acquire() as migrator:
        await migrator.execute(_migration("0011", schema))
        async with migrator.transaction():
            await migrator.execute(_migration("0012", schema))
            assert await _can_lock(pool, schema, APPEND_LOCK), "0012 holds a lock an append waits for"
            assert await _can_lock(pool, schema, READ_LOCK), "0012 holds a lock an entry read waits for"


async def test_the_lenient_trigger_function_never_leaves_the_backfill_transaction(
        schema_before_0011: tuple[asyncpg.Pool, str]) -> None:
    """Mid-0012 another session still runs the strict function; after it, every change is refused again, the
    lenient one's (a NULL tenant set) included."""
    pool, schema = schema_before_0011
    payload = b'{"tenant": "alpha"}'  # a caller-chosen kind: nothing verified this tenant, 0012 leaves it NULL
    fields, digest = next_entry(0, "0" * 64, datetime.now(UTC), "release.notes", "s", payload)
    await pool.fetchval(f"SELECT {schema}.ledger_append($1, $2, $3, $4, $5, $6, $7, $8)", [fields.seq], [fields.ts],
                        [fields.kind], [fields.subject], [payload], [fields.payload_sha256],
                        [fields.prev_hash], [digest])
    await pool.execute(_migration("0011", schema))
    await pool.execute(f"INSERT INTO {schema}.ledger_checkpoints (tree_size, root_hash, note) VALUES (1, 'r', 'n')")
    async with pool.acquire() as migrator, migrator.transaction():
        await migrator.execute(_migration("0012", schema))
        strict = await pool.fetchval("SELECT prosrc FROM pg_proc WHERE proname = 'ledger_refuse_change' AND "
                                     "pronamespace = $1::regnamespace", schema)
        assert "OLD.tenant" not in strict
    assert await pool.fetchval(f"SELECT tenant FROM {schema}.ledger_entries WHERE seq = 1") is None
    with pytest.raises(asyncpg.PostgresError, match="append-only"):
        await pool.execute(f"UPDATE {schema}.ledger_entries SET tenant = 'alpha' WHERE seq = 1")
    with pytest.raises(asyncpg.PostgresError, match="append-only"):
        await pool.execute(f"UPDATE {schema}.ledger_checkpoints SET note = 'm' WHERE tree_size = 1")


async def test_a_backfill_that_disables_the_trigger_would_stop_appends(
        schema_before_0011: tuple[asyncpg.Pool, str]) -> None:
    """The probe itself can fail: what 0011's backfill first did, DISABLE TRIGGER (SHARE ROW EXCLUSIVE until commit),
    stops appends; it was 0011's ADD COLUMN in the same transaction (ACCESS EXCLUSIVE) that stopped reads too."""
    pool, schema = schema_before_0011
    async with pool.acquire() as migrator, migrator.transaction():
        await migrator.execute(f"ALTER TABLE {schema}.ledger_entries DISABLE TRIGGER ledger_entries_append_only")
        assert not await _can_lock(pool, schema, APPEND_LOCK)
