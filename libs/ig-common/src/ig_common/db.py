"""asyncpg pool and forward-only, numbered SQL migrations per service schema.

Two roles per service schema: a migrator that owns the schema and runs the migrations, and the runtime role the
service's pool uses, which gets exactly the DML it needs through default privileges (granted by the migrator on
every table it creates) and can neither change the schema nor touch another one. With one role for both (a
single DSN), everything happens as that role, as before.
"""

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


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def read_migrations(component: str, directory: Path, schema: str, runtime_role: str | None = None
                    ) -> list[Migration]:
    """Numbered ``NNNN_name.sql`` files, in order; ``{schema}`` in a file names the target schema and
    ``{runtime_role}`` the (quoted) role the service runs as, for migrations that grant it less than the default."""
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _MIGRATION_NAME.fullmatch(path.name)
        if not match:
            raise ValueError(f"migration file {path} must be named NNNN_lower_snake.sql")
        sql = path.read_text(encoding="utf-8").replace("{schema}", schema)
        if runtime_role is not None:
            sql = sql.replace("{runtime_role}", quote_ident(runtime_role))
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


async def prepare_service_schema(runtime: asyncpg.Pool, schema: str, service_migrations: Path,
                                 migration_dsn: str | None) -> list[str]:
    """Migrate as the migrator role of ``migration_dsn`` (``IG_MIGRATION_DATABASE_URL``) for the runtime role of
    ``runtime``; without one, as the runtime role itself (which then has to own the schema)."""
    if migration_dsn is None:
        return await prepare_schema(runtime, schema, service_migrations)
    runtime_role = str(await runtime.fetchval("SELECT current_user"))
    migrator = await create_pool(migration_dsn, min_size=1, max_size=1)
    try:
        return await prepare_schema(migrator, schema, service_migrations, runtime_role=runtime_role)
    finally:
        await migrator.close()


async def prepare_schema(pool: asyncpg.Pool, schema: str, service_migrations: Path, *,
                         runtime_role: str | None = None) -> list[str]:
    """Create ``schema`` (unless it exists) and apply the shared mechanism tables, then the service's own
    migrations, as the pool's role; ``runtime_role`` (default: the same role) gets USAGE on the schema and
    SELECT/INSERT/UPDATE/DELETE on what the migrations create, unless a migration revokes it.

    An advisory lock keyed on the schema lets several replicas start at once; each migration runs in its own
    transaction and is recorded, so a second start applies nothing.
    """
    if not _SCHEMA_NAME.fullmatch(schema):
        raise ValueError(f"invalid schema name {schema!r}")
    applied: list[str] = []
    async with pool.acquire() as conn:
        owner = await _act_as_schema_owner(conn, schema)
        migrator = str(await conn.fetchval("SELECT current_user"))
        runtime = runtime_role or migrator
        pending = read_migrations("ig_common", COMMON_MIGRATIONS, schema, runtime) + read_migrations(
            schema, service_migrations, schema, runtime
        )
        await conn.execute("SELECT pg_advisory_lock(hashtext($1))", f"ig-migrations:{schema}")
        try:
            # A migrator owns a schema made for it (ig-infra, the chart) and may not create schemas: look first,
            # as CREATE SCHEMA IF NOT EXISTS checks the database privilege before it checks for the schema.
            if not await conn.fetchval("SELECT true FROM pg_namespace WHERE nspname = $1", schema):
                await conn.execute(f"CREATE SCHEMA {schema}")
            await conn.execute(
                f"""CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
                        component text NOT NULL, version int NOT NULL, name text NOT NULL,
                        applied_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (component, version))"""
            )
            await _keep_migration_records_private(conn, schema)
            if runtime != migrator:
                await _grant_runtime(conn, schema, quote_ident(runtime))
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
            if owner is not None:
                await conn.execute("RESET ROLE")
    if applied:
        log.info("migrations_applied", schema=schema, migrations=applied)
    return applied


async def _act_as_schema_owner(conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy, schema: str
                               ) -> str | None:
    """A superuser (an admin session, a test) migrating a schema laid out for an owner migrates as that owner, so
    that what it creates belongs where the service's own migrator would have put it (and the owner's default
    privileges apply); a superuser's tables would lock the service's roles out. Returns the owner when switched."""
    row = await conn.fetchrow(
        """SELECT n.nspowner::regrole::text AS owner, r.rolsuper AS superuser
           FROM pg_roles r LEFT JOIN pg_namespace n ON n.nspname = $1 WHERE r.rolname = current_user""", schema)
    if row is None or not row["superuser"] or row["owner"] is None or row["owner"] == await conn.fetchval(
            "SELECT current_user"):
        return None
    await conn.execute(f"SET ROLE {row['owner']}")  # a regrole's text form is already a quoted identifier
    return str(row["owner"])


async def _keep_migration_records_private(conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy,
                                          schema: str) -> None:
    """schema_migrations is the migrator's alone: a default privilege of the schema may have granted it on."""
    others = await conn.fetch(
        """SELECT DISTINCT grantee FROM information_schema.role_table_grants
           WHERE table_schema = $1 AND table_name = 'schema_migrations'
             AND grantee NOT IN (current_user, 'PUBLIC')""", schema)
    for row in others:
        await conn.execute(f"REVOKE ALL ON {schema}.schema_migrations FROM {quote_ident(row['grantee'])}")


async def _grant_runtime(conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy, schema: str, runtime: str
                         ) -> None:
    """Default privileges of the migrator in ``schema``: what it creates from now on, the runtime role may read
    and write (not alter, truncate or reference). Idempotent; schema_migrations predates them, so it stays the
    migrator's alone."""
    await conn.execute(f"""
        GRANT USAGE ON SCHEMA {schema} TO {runtime};
        ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {runtime};
        ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT USAGE, SELECT ON SEQUENCES TO {runtime}""")
