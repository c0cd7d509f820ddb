"""Identifiers from the catalog reach SQL quoted: columns named like an injection, or holding a double quote,
migrate as plain columns through every phase that names them (dual-write triggers, backfill, shadow read, view
switch, checksums, partial and full backout), and nothing else in the database is touched."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg
import pytest
import yaml
from ig_common.db import create_pool, prepare_service_schema
from ig_migration.domain.phases import Phase
from ig_migration.orchestrator import commands
from ig_migration.orchestrator.runner import Orchestrator
from ig_migration.store import MIGRATIONS, SCHEMA, target

from .helpers import migrator_dsn, settings, triggers_on

pytestmark = pytest.mark.integration
CHANGE = "hostile-columns-v2"
COLUMNS = ["id", "x; DROP TABLE y", 'say "hi"', "Mixed Case"]

PLAN = {
    "change": CHANGE, "scope": "hostile", "strategy": "blue-green", "backout": "revert-hostile-v1",
    "blue": {"table": "public.hostile", "version": "v1"},
    "green": {"table": "public.hostile_v2", "version": "v2", "steps": [
        {"name": "create-green", "sql": "CREATE TABLE IF NOT EXISTS {green} (LIKE {blue} INCLUDING ALL)"}]},
    "batch": {"size": 100}, "checks": ["load", "disk-space", "slo-headroom"], "shadow_read": {"sample": 0.5},
    "cutover": {"view": "app.hostile"},
}


# The same names as a test author writes them by hand in SQL (independent of the code under test).
HOSTILE_COLUMNS_SQL = '"x; DROP TABLE y", "say ""hi""", "Mixed Case"'


async def test_columns_named_like_sql_migrate_as_quoted_columns(fresh_dsn: str, tmp_path: Path) -> None:
    pool = await create_pool(fresh_dsn, max_size=1)
    await prepare_service_schema(pool, SCHEMA, MIGRATIONS, migrator_dsn(fresh_dsn))
    await pool.close()
    conn = await asyncpg.connect(fresh_dsn)
    # The target schemas (public, app) are laid out by ig-infra and owned by this role.
    await conn.execute("CREATE TABLE y (witness int); INSERT INTO y VALUES (1);"
                       'CREATE TABLE public.hostile (id bigserial PRIMARY KEY, "x; DROP TABLE y" text, '
                       '"say ""hi""" text, "Mixed Case" int);'
                       f"INSERT INTO public.hostile ({HOSTILE_COLUMNS_SQL}) "
                       "SELECT 'v' || g, 'q' || g, g FROM generate_series(1, 450) g")
    assert await target.columns_of(conn, "public.hostile") == COLUMNS

    await commands.submit(conn, yaml.safe_dump(PLAN, sort_keys=False))
    outcome = await Orchestrator(fresh_dsn, settings(fresh_dsn, tmp_path)).run(CHANGE, until=Phase.VERIFY)

    assert outcome.phase is Phase.VERIFY, outcome.detail
    assert await conn.fetchval("SELECT count(*) FROM y") == 1  # nothing ran the text of a column name
    assert await target.columns_of(conn, "public.hostile_v2") == COLUMNS
    assert await target.view_target(conn, "app.hostile") == "hostile_v2"
    view_columns = await conn.fetch("SELECT attname FROM pg_attribute WHERE attrelid = 'app.hostile'::regclass "
                                    "AND attnum > 0 ORDER BY attnum")
    assert [r["attname"] for r in view_columns] == COLUMNS
    # Writes through the view land in green and reach blue through the reverse trigger, column by column.
    await conn.execute(f"INSERT INTO app.hostile ({HOSTILE_COLUMNS_SQL}) VALUES ('written', 'after', 7)")
    await conn.execute('UPDATE app.hostile SET "say ""hi""" = \'changed\' WHERE id = 3')
    for table in ("public.hostile", "public.hostile_v2"):
        assert await conn.fetchval(f'SELECT count(*) FROM {table} WHERE "x; DROP TABLE y" = \'written\' '
                                   f'AND "say ""hi""" = \'after\' AND "Mixed Case" = 7') == 1
        assert await conn.fetchval(f'SELECT "say ""hi""" FROM {table} WHERE id = 3') == "changed"
    report = json.loads((tmp_path / f"{CHANGE}.json").read_text())
    assert report["shadow_read"]["mismatches"] == 0 and report["verify"]["equal"]
    assert 0 < report["shadow_read"]["compared"] < 450  # the sampled comparison names the key column too

    await conn.execute('UPDATE public.hostile_v2 SET "x; DROP TABLE y" = \'corrupted\' WHERE id <= 10')
    partial = await commands.backout(fresh_dsn, CHANGE, [1], settings(fresh_dsn, tmp_path))
    assert partial["validated"], partial
    full = await commands.backout(fresh_dsn, CHANGE, [], settings(fresh_dsn, tmp_path))
    assert full["validated"] and full["blue_rows"] == 451, full
    assert await target.view_target(conn, "app.hostile") == "hostile"
    assert not await target.table_exists(conn, "public.hostile_v2")
    assert await triggers_on(conn, "public.hostile") == []
    assert await conn.fetchval("SELECT count(*) FROM y") == 1
    await conn.close()
