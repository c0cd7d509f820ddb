"""What the database says about its own load and room: the inputs of the gates and of backfill throttling."""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass
from pathlib import Path

import asyncpg

Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy


@dataclass(frozen=True)
class Load:
    active_backends: int
    lock_waits: int
    replication_lag_seconds: float
    replicas: int


async def measure_load(conn: Conn) -> Load:
    """Active backends and waiting lock requests across the server (other databases load the same disks and CPU),
    and the worst replay lag of attached replicas (0 with none attached)."""
    row = await conn.fetchrow(
        """SELECT (SELECT count(*) FROM pg_stat_activity
                   WHERE state = 'active' AND backend_type = 'client backend' AND pid <> pg_backend_pid()) AS active,
                  (SELECT count(*) FROM pg_locks WHERE NOT granted) AS lock_waits,
                  (SELECT coalesce(max(extract(epoch FROM greatest(write_lag, flush_lag, replay_lag))), 0)
                   FROM pg_stat_replication) AS lag,
                  (SELECT count(*) FROM pg_stat_replication) AS replicas""")
    assert row is not None
    return Load(int(row["active"]), int(row["lock_waits"]), float(row["lag"] or 0.0), int(row["replicas"]))


@dataclass(frozen=True)
class Room:
    free_bytes: int
    method: str


async def measure_free_space(conn: Conn, configured_free_bytes: int | None) -> Room:
    """Free space on the data directory's filesystem when the orchestrator runs beside the server; otherwise the
    operator-configured figure (PostgreSQL has no SQL function for it), and the gate detail says which."""
    data_dir = str(await conn.fetchval("SHOW data_directory"))
    if await asyncio.to_thread(Path(data_dir).is_dir):
        return Room(shutil.disk_usage(data_dir).free, f"statvfs({data_dir})")
    if configured_free_bytes is not None:
        return Room(configured_free_bytes, "IG_DB_FREE_BYTES (data directory not local)")
    return Room(0, f"data directory {data_dir} not local and IG_DB_FREE_BYTES unset: fail closed")


async def database_rollbacks(conn: Conn) -> tuple[int, int]:
    row = await conn.fetchrow("SELECT xact_commit, xact_rollback FROM pg_stat_database "
                              "WHERE datname = current_database()")
    assert row is not None
    return int(row["xact_commit"]), int(row["xact_rollback"])


async def statement_totals(conn: Conn, pattern: str) -> tuple[float, int]:
    """Summed execution time (ms) and calls of this database's statements whose text matches ``pattern``."""
    row = await conn.fetchrow(
        """SELECT coalesce(sum(total_exec_time), 0) AS ms, coalesce(sum(calls), 0) AS calls
           FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
             AND query ILIKE $1""", pattern)
    assert row is not None
    return float(row["ms"]), int(row["calls"])


async def ensure_pg_stat_statements(conn: Conn) -> bool:
    """The server preloads the library; the view needs the extension in this database."""
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        await conn.fetchval("SELECT count(*) FROM pg_stat_statements LIMIT 1")
        return True
    except asyncpg.PostgresError:
        return False
