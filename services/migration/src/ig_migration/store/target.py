"""SQL against the database being migrated: green structures, dual-write triggers, batched copy, comparison,
the versioned-view switch, checksums and re-sync. Every table, column, trigger and function name spliced into a
statement is quoted by ``store.identifiers`` (plan names and catalog names alike: a catalog column may be called
``x; DROP TABLE y``); values are bound parameters or integers.

Dual-write is done with triggers rather than in the application: a trigger catches every writer (old app
versions, psql sessions, batch jobs) and commits in the writer's own transaction, so a crash can never leave a
write in one side only. Blue -> green runs from the dual-write phase on; green -> blue (Vitess's ReverseTraffic)
is added just before cutover, which is what makes a later backout lose nothing. A transaction-local flag keeps
one direction from echoing the other's copies.
"""

from __future__ import annotations

import hashlib
import json
import time
import zlib
from dataclasses import dataclass

import asyncpg

from ig_migration.domain.plan import Plan
from ig_migration.store.identifiers import quote_ident, quote_list, quote_qualified

Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
SUPPRESS = "ig_migration.suppress_dual_write"
# Advisory-lock namespace of the backfill fence (distinct from the orchestrator's session lock namespace).
FENCE_NAMESPACE = 0x1A7F


@dataclass(frozen=True)
class Names:
    blue: str
    green: str
    view: str
    key: str
    forward_trigger: str
    reverse_trigger: str
    forward_function: str
    reverse_function: str
    fence_key: int

    @classmethod
    def of(cls, plan: Plan) -> Names:
        tag = "ig_mig_" + hashlib.sha1(plan.change.encode()).hexdigest()[:10]
        fence = zlib.crc32(plan.change.encode("utf-8"))
        return cls(plan.blue.table, plan.green.table, plan.cutover.view, plan.entity.key,
                   f"{tag}_to_green", f"{tag}_to_blue", f"migration.{tag}_to_green", f"migration.{tag}_to_blue",
                   fence - (1 << 32) if fence >= (1 << 31) else fence)

    # The same names quoted for SQL (the plain ones above are for messages, reports and regclass lookups).
    @property
    def blue_sql(self) -> str:
        return quote_qualified(self.blue)

    @property
    def green_sql(self) -> str:
        return quote_qualified(self.green)

    @property
    def view_sql(self) -> str:
        return quote_qualified(self.view)

    @property
    def key_sql(self) -> str:
        return quote_ident(self.key)


@dataclass(frozen=True)
class Fingerprint:
    rows: int
    checksum: str


@dataclass(frozen=True)
class SwitchTiming:
    attempts: int
    lock_wait_ms: float
    lock_hold_ms: float
    total_ms: float


async def columns_of(conn: Conn, table: str) -> list[str]:
    rows = await conn.fetch(
        """SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped
           AND attgenerated = '' ORDER BY attnum""", table)
    if not rows:
        raise LookupError(f"table {table} has no columns or does not exist")
    return [r["attname"] for r in rows]


async def table_exists(conn: Conn, table: str) -> bool:
    return bool(await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table))


async def drop_invalid_indexes(conn: Conn, table: str) -> list[str]:
    """An interrupted CREATE INDEX CONCURRENTLY leaves an INVALID index that IF NOT EXISTS would keep; drop it."""
    if not await table_exists(conn, table):
        return []
    rows = await conn.fetch(
        """SELECT n.nspname, c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE i.indrelid = $1::regclass AND NOT i.indisvalid""", table)
    for row in rows:
        await conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {quote_ident(row['nspname'])}."
                           f"{quote_ident(row['relname'])}")
    return [f"{row['nspname']}.{row['relname']}" for row in rows]


async def run_step(conn: Conn, sql: str, lock_timeout_ms: int) -> None:
    """One expand statement outside a transaction block (CONCURRENTLY needs that), with lock_timeout always set."""
    await conn.execute(f"SET lock_timeout = '{int(lock_timeout_ms)}ms'")
    try:
        await conn.execute(sql)
    finally:
        await conn.execute("RESET lock_timeout")


def _copy_function(function: str, target_table: str, key_column: str, columns: list[str], fence_key: int) -> str:
    name, target, key = quote_qualified(function), quote_qualified(target_table), quote_ident(key_column)
    cols = quote_list(columns)
    fence = f"PERFORM pg_advisory_xact_lock_shared({FENCE_NAMESPACE}, {int(fence_key)});"
    values = quote_list(columns, prefix="NEW.")
    updates = ", ".join(f"{quote_ident(c)} = EXCLUDED.{quote_ident(c)}" for c in columns if c != key_column) \
        or f"{key} = EXCLUDED.{key}"
    return f"""
CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  -- Re-syncs and backfills write both sides themselves, and the other direction's trigger must not echo the copy
  -- we are about to make: the flag is transaction-local and switched back off right after the copy.
  IF current_setting('{SUPPRESS}', true) = 'on' THEN
    RETURN NULL;
  END IF;
  PERFORM set_config('{SUPPRESS}', 'on', true);
  -- A removal must not race a backfill batch that read the row before it was gone (see copy_batch).
  IF TG_OP = 'DELETE' THEN
    {fence}
    DELETE FROM {target} WHERE {key} = OLD.{key};
  ELSE
    IF TG_OP = 'UPDATE' AND NEW.{key} IS DISTINCT FROM OLD.{key} THEN
      {fence}
      DELETE FROM {target} WHERE {key} = OLD.{key};
    END IF;
    INSERT INTO {target} ({cols}) VALUES ({values})
      ON CONFLICT ({key}) DO UPDATE SET {updates};
  END IF;
  PERFORM set_config('{SUPPRESS}', 'off', true);
  RETURN NULL;
END
$fn$"""


async def install_dual_write(conn: Conn, names: Names, columns: list[str], lock_timeout_ms: int) -> None:
    """Both directions' triggers, forward enabled; reverse disabled until just before cutover so the backfill's
    inserts into green cost no trigger call. Idempotent, so a resumed run can repeat it."""
    async with conn.transaction():
        await conn.execute(f"SET LOCAL lock_timeout = '{int(lock_timeout_ms)}ms'")
        await conn.execute(_copy_function(names.forward_function, names.green, names.key, columns, names.fence_key))
        await conn.execute(_copy_function(names.reverse_function, names.blue, names.key, columns, names.fence_key))
        for table, trigger, function in ((names.blue_sql, names.forward_trigger, names.forward_function),
                                         (names.green_sql, names.reverse_trigger, names.reverse_function)):
            await conn.execute(f"DROP TRIGGER IF EXISTS {quote_ident(trigger)} ON {table}")
            await conn.execute(f"CREATE TRIGGER {quote_ident(trigger)} AFTER INSERT OR UPDATE OR DELETE ON {table} "
                               f"FOR EACH ROW EXECUTE FUNCTION {quote_qualified(function)}()")
        await conn.execute(f"ALTER TABLE {names.green_sql} DISABLE TRIGGER {quote_ident(names.reverse_trigger)}")


async def remove_dual_write(conn: Conn, names: Names, lock_timeout_ms: int) -> None:
    async with conn.transaction():
        await conn.execute(f"SET LOCAL lock_timeout = '{int(lock_timeout_ms)}ms'")
        await conn.execute(f"DROP TRIGGER IF EXISTS {quote_ident(names.forward_trigger)} ON {names.blue_sql}")
        if await table_exists(conn, names.green):
            await conn.execute(f"DROP TRIGGER IF EXISTS {quote_ident(names.reverse_trigger)} ON {names.green_sql}")
        await conn.execute(f"DROP FUNCTION IF EXISTS {quote_qualified(names.forward_function)}()")
        await conn.execute(f"DROP FUNCTION IF EXISTS {quote_qualified(names.reverse_function)}()")


async def ensure_view(conn: Conn, names: Names, columns: list[str]) -> None:
    """The stable name clients use; created on blue when it does not exist yet (pgroll's version schema)."""
    schema = names.view.split(".")[0] if "." in names.view else "public"
    # The plan's role owns the target schemas but may not create schemas (CREATE SCHEMA IF NOT EXISTS would ask).
    if not await conn.fetchval("SELECT to_regnamespace($1) IS NOT NULL", schema):
        await conn.execute(f"CREATE SCHEMA {quote_ident(schema)}")
    if not await table_exists(conn, names.view):
        await conn.execute(f"CREATE VIEW {names.view_sql} AS SELECT {quote_list(columns)} FROM {names.blue_sql}")


async def view_target(conn: Conn, view: str) -> str:
    """Which table the versioned view reads from today."""
    found = await conn.fetchval(
        """SELECT DISTINCT d.refobjid::regclass::text FROM pg_rewrite r JOIN pg_depend d ON d.objid = r.oid
           WHERE r.ev_class = $1::regclass AND d.refobjid <> r.ev_class AND d.classid = 'pg_rewrite'::regclass
             AND d.refclassid = 'pg_class'::regclass""", view)
    return str(found)


async def key_bounds(conn: Conn, table: str, key: str) -> tuple[int, int, int]:
    column = quote_ident(key)
    row = await conn.fetchrow(f"SELECT coalesce(min({column}), 0) - 1 AS lo, coalesce(max({column}), 0) AS hi, "
                              f"count(*) AS n FROM {quote_qualified(table)}")
    assert row is not None
    return int(row["lo"]), int(row["hi"]), int(row["n"])


async def copy_batch(conn: Conn, names: Names, columns: list[str], after_key: int, end_key: int,
                     size: int) -> tuple[int, int, int]:
    """Copy the next ``size`` entities after ``after_key`` (up to ``end_key``).

    Returns (upper key, entities covered, rows inserted): entities the dual-write had already put into green are
    covered without being inserted again. Updates need no coordination: the trigger upserts the newer version,
    and ON CONFLICT DO NOTHING here never overwrites it, whichever commits first. Deletes do: a row deleted after
    this batch read it but before it inserted it would come back to life in green. So the batch holds the fence
    (an exclusive advisory lock) and deleting triggers take it shared: deletes in flight finish before the batch
    reads, new ones wait for its commit. That costs deleters at most one batch of latency, instead of the batch
    row-locking every row it copies (which halves backfill throughput). The caller commits the checkpoint in this
    same transaction.
    """
    await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", FENCE_NAMESPACE, names.fence_key)
    key, blue, green = names.key_sql, names.blue_sql, names.green_sql
    upper = await conn.fetchval(
        f"SELECT {key} FROM {blue} WHERE {key} > $1 AND {key} <= $2 "
        f"ORDER BY {key} OFFSET $3 LIMIT 1", after_key, end_key, size - 1)
    upper = end_key if upper is None else int(upper)
    cols = quote_list(columns)
    row = await conn.fetchrow(
        f"""WITH source AS (SELECT {cols} FROM {blue} WHERE {key} > $1 AND {key} <= $2),
                 copied AS (INSERT INTO {green} ({cols}) SELECT {cols} FROM source
                            ON CONFLICT ({key}) DO NOTHING RETURNING 1)
            SELECT (SELECT count(*) FROM source) AS covered, (SELECT count(*) FROM copied) AS inserted""",
        after_key, upper)
    assert row is not None
    return upper, int(row["covered"]), int(row["inserted"])


def _row_hash(alias: str, columns: list[str]) -> str:
    return f"md5({_row_text(alias, columns)})"


async def compare_chunk(conn: Conn, names: Names, columns: list[str], lo: int, hi: int, selector: str,
                        sample: float, max_listed: int) -> tuple[int, int, list[dict[str, object]]]:
    """Compare blue and green for keys in (lo, hi] in one statement (one snapshot), so a concurrent writer whose
    dual-write commits atomically never shows up as a mismatch. Returns (compared, mismatches, first listed)."""
    # ``selector`` is the plan's own SQL predicate (reviewed and signed with the plan), the one SQL text not built here.
    parts = []
    for alias, table in (("b", names.blue_sql), ("g", names.green_sql)):
        key = f"{alias}.{names.key_sql}"
        sampled = "true" if sample >= 1.0 else f"abs(hashint8({key})) % 10000 < {int(sample * 10000)}"
        parts.append(f"SELECT {key} AS k, {_row_hash(alias, columns)} AS h FROM {table} {alias} "
                     f"WHERE {key} > $1 AND {key} <= $2 AND ({selector}) AND {sampled}")
    row = await conn.fetchrow(
        f"""WITH b AS ({parts[0]}), g AS ({parts[1]}),
                 j AS (SELECT coalesce(b.k, g.k) AS k, b.h AS bh, g.h AS gh FROM b FULL JOIN g ON b.k = g.k)
            SELECT (SELECT count(*) FROM j) AS compared,
                   (SELECT count(*) FROM j WHERE bh IS DISTINCT FROM gh) AS bad,
                   (SELECT coalesce(json_agg(x ORDER BY x.k), '[]')::text FROM
                      (SELECT k, CASE WHEN gh IS NULL THEN 'missing-in-green' WHEN bh IS NULL THEN 'missing-in-blue'
                                      ELSE 'differs' END AS kind
                       FROM j WHERE bh IS DISTINCT FROM gh ORDER BY k LIMIT $3) x) AS listed""",
        lo, hi, max_listed)
    assert row is not None
    listed = [{"key": int(item["k"]), "kind": str(item["kind"])} for item in json.loads(row["listed"])]
    return int(row["compared"]), int(row["bad"]), listed


async def fingerprints(conn: Conn, tables: list[str], columns: list[str], key: str,
                       key_range: tuple[int, int] | None = None) -> list[Fingerprint]:
    """Row count and an order-independent checksum per table, all read in one REPEATABLE READ snapshot."""
    column = f"t.{quote_ident(key)}"
    where = f"WHERE {column} > {int(key_range[0])} AND {column} <= {int(key_range[1])}" if key_range else ""
    found = []
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        for table in tables:
            row = await conn.fetchrow(
                f"SELECT count(*) AS n, coalesce(sum(hashtextextended({_row_text('t', columns)}, 0)), 0)::text AS s "
                f"FROM {quote_qualified(table)} t {where}")
            assert row is not None
            found.append(Fingerprint(int(row["n"]), str(row["s"])))
    return found


def _row_text(alias: str, columns: list[str]) -> str:
    return f"row({quote_list(columns, prefix=f'{alias}.')})::text"


async def switch_view(conn: Conn, names: Names, columns: list[str], to_green: bool, lock_timeout_ms: int,
                      attempts: int, record: str | None = None, record_args: tuple[object, ...] = ()) -> SwitchTiming:
    """Point the versioned view at one side in one short transaction.

    Both dual-write directions are live by then (see enable_reverse), so the switch is a single view replacement:
    the view's ACCESS EXCLUSIVE lock waits for writers already inside it and holds new ones back for the few
    milliseconds it takes. ``record`` (a statement of the orchestrator's state) commits in the same transaction, so
    the state never claims a switch that did not happen. A lock wait beyond lock_timeout aborts the attempt rather
    than queueing writers behind us; the attempt is retried.
    """
    target = names.green_sql if to_green else names.blue_sql
    last_error: Exception | None = None
    for attempt in range(1, attempts + 1):
        started = time.perf_counter()
        try:
            async with conn.transaction():
                await conn.execute(f"SET LOCAL lock_timeout = '{int(lock_timeout_ms)}ms'")
                # The switch and its state row commit together or not at all; a crash right after the commit
                # cannot reorder it after writers' later (flushed) commits, so the WAL flush need not be awaited.
                await conn.execute("SET LOCAL synchronous_commit = off")
                await conn.execute(f"LOCK TABLE {names.view_sql} IN ACCESS EXCLUSIVE MODE")
                locked = time.perf_counter()
                await conn.execute(f"CREATE OR REPLACE VIEW {names.view_sql} AS SELECT {quote_list(columns)} "
                                   f"FROM {target}")
                if record is not None:
                    await conn.execute(record, *record_args)
            done = time.perf_counter()
            return SwitchTiming(attempt, (locked - started) * 1000, (done - locked) * 1000, (done - started) * 1000)
        except (asyncpg.exceptions.LockNotAvailableError, asyncpg.exceptions.DeadlockDetectedError) as error:
            last_error = error
    raise TimeoutError(f"could not take the cutover locks within {lock_timeout_ms} ms in {attempts} attempts: "
                       f"{last_error}")


async def enable_reverse(conn: Conn, names: Names, lock_timeout_ms: int) -> None:
    """Turn on green -> blue before the cutover, outside its critical section. Until the switch nobody writes to
    green except the forward trigger, whose copies the reverse one ignores; after it, every write through the view
    lands in green and is copied back to blue, which is what lets a backout lose nothing."""
    async with conn.transaction():
        await conn.execute(f"SET LOCAL lock_timeout = '{int(lock_timeout_ms)}ms'")
        await conn.execute(f"ALTER TABLE {names.green_sql} ENABLE TRIGGER {quote_ident(names.reverse_trigger)}")


async def resync_range(conn: Conn, names: Names, columns: list[str], serving: str, lo: int, hi: int) -> int:
    """Put blue's record back into green for keys in (lo, hi]. The serving side is locked first (the order its
    writers take), dual-write is suppressed for this transaction only, and the caller validates afterwards."""
    cols, key = quote_list(columns), names.key_sql
    async with conn.transaction():
        await conn.execute(f"SELECT set_config('{SUPPRESS}', 'on', true)")
        await conn.execute(f"SELECT 1 FROM {quote_qualified(serving)} WHERE {key} > $1 AND {key} <= $2 FOR UPDATE",
                           lo, hi)
        await conn.execute(f"DELETE FROM {names.green_sql} WHERE {key} > $1 AND {key} <= $2", lo, hi)
        status = await conn.execute(
            f"INSERT INTO {names.green_sql} ({cols}) SELECT {cols} FROM {names.blue_sql} "
            f"WHERE {key} > $1 AND {key} <= $2", lo, hi)
    return int(status.split()[-1])


async def hand_over_sequences(conn: Conn, from_table: str, to_table: str) -> list[str]:
    """Sequences owned by ``from_table``'s columns (bigserial) become owned by the same columns of ``to_table``,
    so dropping blue does not take the key sequence green's defaults use."""
    rows = await conn.fetch(
        """SELECT n.nspname, s.relname, s.oid::regclass::text AS seq, a.attname AS col FROM pg_depend d
           JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
           JOIN pg_namespace n ON n.oid = s.relnamespace
           JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
           WHERE d.refobjid = $1::regclass AND d.deptype = 'a'""", from_table)
    for row in rows:
        await conn.execute(f"ALTER SEQUENCE {quote_ident(row['nspname'])}.{quote_ident(row['relname'])} "
                           f"OWNED BY {quote_qualified(to_table)}.{quote_ident(row['col'])}")
    return [str(r["seq"]) for r in rows]


async def drop_table(conn: Conn, table: str, lock_timeout_ms: int) -> None:
    await conn.execute(f"SET lock_timeout = '{int(lock_timeout_ms)}ms'")
    try:
        await conn.execute(f"DROP TABLE IF EXISTS {quote_qualified(table)}")
    finally:
        await conn.execute("RESET lock_timeout")


async def relation_bytes(conn: Conn, table: str) -> int:
    return int(await conn.fetchval("SELECT pg_total_relation_size($1::regclass)", table))
