from pathlib import Path

import asyncpg
import pytest
from ig_common.db import create_pool, prepare_schema, read_migrations


def test_migration_files_must_be_numbered(tmp_path: Path) -> None:
    (tmp_path / "create_things.sql").write_text("SELECT 1;")
    with pytest.raises(ValueError, match=r"NNNN_lower_snake\.sql"):
        read_migrations("x", tmp_path, "x")


def test_duplicate_numbers_are_rejected(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("SELECT 1;")
    (tmp_path / "0001_b.sql").write_text("SELECT 1;")
    with pytest.raises(ValueError, match="duplicate"):
        read_migrations("x", tmp_path, "x")


@pytest.mark.integration
async def test_prepare_schema_applies_each_migration_once(database_url: str, tmp_path: Path) -> None:
    (tmp_path / "0001_things.sql").write_text("CREATE TABLE {schema}.things (id int PRIMARY KEY);")
    (tmp_path / "0002_more.sql").write_text("ALTER TABLE {schema}.things ADD COLUMN name text;")
    pool = await create_pool(database_url)
    try:
        first = await prepare_schema(pool, "mig_once", tmp_path)
        second = await prepare_schema(pool, "mig_once", tmp_path)
        assert first == ["ig_common/0001_outbox_inbox.sql", "mig_once/0001_things.sql", "mig_once/0002_more.sql"]
        assert second == []
        columns = await pool.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'mig_once' "
            "AND table_name = 'things' ORDER BY ordinal_position")
        assert [c["column_name"] for c in columns] == ["id", "name"]
    finally:
        await pool.close()


@pytest.mark.integration
async def test_failing_migration_leaves_nothing_half_applied(database_url: str, tmp_path: Path) -> None:
    (tmp_path / "0001_broken.sql").write_text("CREATE TABLE {schema}.half (id int); SELECT * FROM no_such_table;")
    pool = await create_pool(database_url)
    try:
        with pytest.raises(asyncpg.UndefinedTableError):
            await prepare_schema(pool, "mig_broken", tmp_path)
        exists = await pool.fetchval("SELECT to_regclass('mig_broken.half') IS NOT NULL")
        assert exists is False
    finally:
        await pool.close()
