"""asyncpg pool and forward-only, numbered SQL migrations per service schema."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import structlog

log = structlog.get_logger(__name__)

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
COMMON_MIGRATIONS = Path(__file__).parent / "migrations"


@dataclass(frozen=True)
class Migration:
    component: str
    version: int
    name: str
    sql: str


def read_migrations(component: str, directory: Path, schema: str) -> list[Migration]:
    """Numbered ``NNNN_name.sql`` files, in order; ``{schema}`` in a file names the target schema."""
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if not match:
            raise ValueError(f"migration file {path} must be named NNNN_lower_snake.sql")
        sql = path.read_text(encoding="utf-8").replace("{schema}", schema)
        found.append(Migration(component, int(match.group(1)), path.name, sql))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"duplicate migration numbers in {directory}")
    return found


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10, reset_session: bool = True
                      ) -> asyncpg.Pool:
    """``reset_session=False`` skips asyncpg's reset query on every release (pg_advisory_unlock_all, CLOSE ALL,
    UNLISTEN *, RESET ALL: a round trip per release). Only for services that keep no session state on pooled
    connections (no session advisory locks, LISTEN, plain SET, WITH HOLD cursors); asyncpg still rolls back a
    transaction left open and drops listeners on release either way."""
    pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size,
                                     reset=None if reset_session else _keep_session)
    assert pool is not None
    return pool


async def _keep_session(_: asyncpg.Connection) -> None:
    return None


async def prepare_schema(pool: asyncpg.Pool, schema: str, service_migrations: Path) -> list[str]:
    """Create ``schema`` and apply the shared mechanism tables, then the service's own migrations.

    An advisory lock keyed on the schema lets several replicas start at once; each migration runs in its own
    transaction and is recorded, so a second start applies nothing.
    """
    if not _SCHEMA_NAME.match(schema):
        raise ValueError(f"invalid schema name {schema!r}")
    pending = read_migrations("ig_common", COMMON_MIGRATIONS, schema) + read_migrations(
        schema, service_migrations, schema
    )
    applied: list[str] = []
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock(hashtext($1))", f"ig-migrations:{schema}")
        try:
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            await conn.execute(
                f"""CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
                        component text NOT NULL, version int NOT NULL, name text NOT NULL,
                        applied_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (component, version))"""
            )
            done = {
                (r["component"], r["version"])
                for r in await conn.fetch(f"SELECT component, version FROM {schema}.schema_migrations")
            }
            for migration in pending:
                if (migration.component, migration.version) in done:
                    continue
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(
                        f"INSERT INTO {schema}.schema_migrations (component, version, name) VALUES ($1, $2, $3)",
                        migration.component, migration.version, migration.name,
                    )
                applied.append(f"{migration.component}/{migration.name}")
        finally:
            await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", f"ig-migrations:{schema}")
    if applied:
        log.info("migrations_applied", schema=schema, migrations=applied)
    return applied
