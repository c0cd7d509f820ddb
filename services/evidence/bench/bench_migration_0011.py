"""How long migrations 0011 and 0012 (the entries' tenant: column, index, backfill) stop a large ledger's appends
and entry reads.

Each migration runs in one transaction (ig_common.db.prepare_schema) and keeps its locks until it commits. 0011's
ALTER TABLE takes the entries table ACCESS EXCLUSIVE and its index build SHARE, so appends (ROW EXCLUSIVE) and
entry reads (ACCESS SHARE: Get, List, Verify) wait for it; 0012's backfill takes row locks only. This bench measures
both: a database at migration 0010, filled with N entries by one SQL statement (no chain: neither migration reads a
hash, so the rows need only the shape and the mix of kinds appends write; a tenth access entries, a tenth
registrations), then each migration applied as the service's migrator applies it while two more sessions ask, every
50 ms, for an append's lock and for a reader's, and the longest wait of each is kept.

    uv run python services/evidence/bench/bench_migration_0011.py      # IG_BENCH_MIGRATION_SIZES=1000000,10000000
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from ig_common.db import prepare_schema
from ig_evidence.store import MIGRATIONS
from ig_infra.components import Postgres
from ig_infra.paths import Paths

REPO = Path(__file__).resolve().parents[3]
SIZES = [int(s) for s in os.environ.get("IG_BENCH_MIGRATION_SIZES", "1000000").split(",")]
STEPS = [Path("0011_ledger_entry_tenant.sql"), Path("0012_ledger_entry_tenant_backfill.sql")]

FILL = """
INSERT INTO evidence.ledger_entries (seq, ts, kind, subject, payload, payload_sha256, prev_hash, entry_hash)
SELECT g, now(),
       CASE g % 10 WHEN 0 THEN 'ig.audit.access' WHEN 1 THEN 'evidence.bundle_registered' ELSE 'bench.bulk' END,
       's' || (g % 1000),
       convert_to(json_build_object('tenant', 't' || (g % 7), 'release', 'v' || (g % 97), 'n', g)::text, 'UTF8'),
       encode(sha256(int8send(g)), 'hex'), encode(sha256(int8send(g - 1)), 'hex'), encode(sha256(int8send(g)), 'hex')
FROM generate_series($1::bigint, $2::bigint) AS g
"""


# The secondary indexes are built after the fill, as a restore would: inserted row by row, the random entry-hash
# index alone made a 10 M fill take most of an hour here. Same names and definitions as migration 0002.
INDEXES = [
    "ALTER TABLE evidence.ledger_entries ADD CONSTRAINT ledger_entries_entry_hash_key UNIQUE (entry_hash)",
    "CREATE INDEX ledger_entries_kind_subject ON evidence.ledger_entries (kind, subject, seq)",
    "CREATE INDEX ledger_entries_subject ON evidence.ledger_entries (subject, seq)",
]


async def fill(conn: asyncpg.Connection, size: int) -> float:
    started = time.perf_counter()
    await conn.execute("SET session_replication_role = replica")  # the append triggers, off for this session
    await conn.execute("ALTER TABLE evidence.ledger_entries DROP CONSTRAINT ledger_entries_entry_hash_key")
    await conn.execute("DROP INDEX evidence.ledger_entries_kind_subject, evidence.ledger_entries_subject")
    await conn.execute(FILL, 1, size)
    await conn.execute("SET maintenance_work_mem = '512MB'")
    for statement in INDEXES:
        await conn.execute(statement)
    await conn.execute("UPDATE evidence.ledger_head SET size = $1", size)
    await conn.execute("RESET session_replication_role")
    await conn.execute("VACUUM (ANALYZE) evidence.ledger_entries")
    await conn.execute("CHECKPOINT")
    return time.perf_counter() - started


async def longest_waits(dsn: str, mode: str, done: asyncio.Event) -> float:
    """The longest a session asking for ``mode`` on the entries table (every 50 ms, one transaction each) waited
    before ``done``: what an append or a reader would have waited at worst."""
    conn = await asyncpg.connect(dsn)
    longest = 0.0
    try:
        while not done.is_set():
            async with conn.transaction():
                started = time.perf_counter()
                await conn.execute(f"LOCK TABLE evidence.ledger_entries IN {mode} MODE")
                longest = max(longest, time.perf_counter() - started)
            await asyncio.sleep(0.05)
        return longest
    finally:
        await conn.close()


async def timed_migration(pool: asyncpg.Pool, dsn: str, migrations: Path) -> dict[str, Any]:
    done = asyncio.Event()
    appender = asyncio.create_task(longest_waits(dsn, "ROW EXCLUSIVE", done))  # what INSERT takes
    reader = asyncio.create_task(longest_waits(dsn, "ACCESS SHARE", done))  # what SELECT takes
    await asyncio.sleep(0.2)
    started = time.perf_counter()
    applied = await prepare_schema(pool, "evidence", migrations)
    seconds = time.perf_counter() - started
    done.set()
    return {"applied": applied, "seconds": round(seconds, 2), "append_waited_at_most_seconds": round(await appender, 2),
            "entry_read_waited_at_most_seconds": round(await reader, 2)}


async def measure(dsn: str, size: int, before: Path, steps: list[Path]) -> dict[str, Any]:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    try:
        await prepare_schema(pool, "evidence", before)
        async with pool.acquire() as conn:
            fill_seconds = await fill(conn, size)
            table_mb = await conn.fetchval("SELECT pg_total_relation_size('evidence.ledger_entries') / 1048576")
        migrations = [await timed_migration(pool, dsn, step) for step in steps]
        async with pool.acquire() as conn:
            attributed = await conn.fetchval("SELECT count(*) FROM evidence.ledger_entries WHERE tenant IS NOT NULL")
    finally:
        await pool.close()
    assert [m["applied"] for m in migrations] == [[f"evidence/{step.name}"] for step in STEPS], migrations
    return {"entries": size, "table_mib": table_mb, "fill_seconds": round(fill_seconds, 1),
            "migrations": {m.pop("applied")[0]: m for m in migrations}, "entries_attributed": attributed}


def main() -> None:
    postgres = Postgres(Paths.from_environment())
    results = []
    with tempfile.TemporaryDirectory(prefix="ig-bench-0011-") as work:
        # One directory per step: the migrations before 0011, then up to each step (applied ones are skipped).
        directories = [Path(work, "before"), *(Path(work, step.stem) for step in STEPS)]
        for index, directory in enumerate(directories):
            directory.mkdir()
            for path in sorted(MIGRATIONS.glob("*.sql")):
                if path.name < STEPS[0].name or any(path.name == step.name for step in STEPS[:index]):
                    shutil.copy(path, directory)
        for size in SIZES:
            name = f"ig_bench_0011_{uuid.uuid4().hex[:6]}"
            postgres.provision(name)
            try:
                figures = asyncio.run(measure(postgres.dsn(name), size, directories[0], directories[1:]))
            finally:
                postgres.admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', transaction=False)
            results.append(figures)
            print(f"  {size:,} entries ({figures['table_mib']} MiB), {figures['entries_attributed']:,} attributed:",
                  flush=True)
            for migration, m in figures["migrations"].items():
                print(f"    {migration}: {m['seconds']} s; an append waited at most "
                      f"{m['append_waited_at_most_seconds']} s, an entry read "
                      f"{m['entry_read_waited_at_most_seconds']} s",
                      flush=True)
    out = Path(os.environ.get("ARTIFACTS", REPO / "artifacts")) / "bench" / "evidence-migration-0011.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"sizes": results, "load_average": os.getloadavg()}, indent=2) + "\n")
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
