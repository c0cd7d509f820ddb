"""The ledger's append check in PostgreSQL alone: statements of n entries through ``ledger_append``, on a schema
migrated up to 0009 (the head checked and moved once per row) and on one with every migration (0010: once per
statement), alternating, on a scratch database of the shared PostgreSQL (dropped afterwards).

Prints, per statement size and schema, the median wall time per statement and the CPU the backend spent per row
(its /proc utime + stime; clock-tick resolution, so the small sizes run many statements). Run:
``uv run python services/evidence/bench/bench_head_trigger.py``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from ig_common.db import create_pool, prepare_schema
from ig_evidence.domain.chain import next_entry
from ig_evidence.store import MIGRATIONS
from ig_infra.components import Postgres
from ig_infra.paths import Paths

SIZES = ((1, 1000), (4, 400), (50, 40), (1000, 6))  # (entries per statement, statements)
PER_STATEMENT = "0010_head_moves_once_per_statement.sql"


def backend_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def append_statements(conn: asyncpg.Connection, schema: str, n: int, statements: int) -> tuple[float, float]:
    """Median ms per statement, backend CPU µs per row."""
    size, prev = await conn.fetchrow(f"SELECT size, head_hash FROM {schema}.ledger_head")
    backend = await conn.fetchval("SELECT pg_backend_pid()")
    cpu_before, times = backend_cpu_seconds(backend), []
    for _ in range(statements):
        ts, columns = datetime.now(UTC), [[] for _ in range(8)]
        for i in range(n):
            payload = b"p%d" % size
            fields, digest = next_entry(size, prev, ts, "bench.trigger", f"s{i}", payload)
            for column, value in zip(columns, (fields.seq, ts, fields.kind, fields.subject, payload,
                                               fields.payload_sha256, fields.prev_hash, digest), strict=True):
                column.append(value)
            size, prev = fields.seq, digest
        started = time.perf_counter()
        await conn.fetchval(f"SELECT {schema}.ledger_append($1, $2, $3, $4, $5, $6, $7, $8)", *columns)
        times.append(time.perf_counter() - started)
    cpu = backend_cpu_seconds(backend) - cpu_before
    return sorted(times)[len(times) // 2] * 1000, cpu * 1e6 / (n * statements)


async def main() -> None:
    postgres = Postgres(Paths.from_environment())
    name = f"ig_bench_head_trigger_{os.getpid()}"
    postgres.provision(name)
    per_row = Path(tempfile.mkdtemp(prefix="ig-bench-trigger-")) / "migrations"
    shutil.copytree(MIGRATIONS, per_row, ignore=shutil.ignore_patterns(PER_STATEMENT, "0011_*", "0012_*"))
    # Both stop before 0011 (the entry's tenant), whose ledger_append takes a ninth column: the two checks compared.
    per_statement = per_row.parent / "per-statement"
    shutil.copytree(MIGRATIONS, per_statement, ignore=shutil.ignore_patterns("0011_*", "0012_*"))
    try:
        pool = await create_pool(postgres.dsn(name))
        await prepare_schema(pool, "per_row", per_row)
        await prepare_schema(pool, "per_statement", per_statement)
        await pool.close()
        conn = await asyncpg.connect(postgres.dsn(name))
        try:
            for n, statements in SIZES:
                for schema in ("per_row", "per_statement", "per_row", "per_statement"):
                    ms, cpu = await append_statements(conn, schema, n, statements)
                    print(f"{n:5d} entries per statement, {schema:13s}: median {ms:7.2f} ms per statement, "
                          f"backend CPU {cpu:6.1f} µs per row", flush=True)
        finally:
            await conn.close()
    finally:
        shutil.rmtree(per_row.parent, ignore_errors=True)
        postgres.admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', transaction=False)


if __name__ == "__main__":
    asyncio.run(main())
