"""The orchestrator's own records in the ``migration`` schema: changes, checkpoints, batches, timeline, results,
metric samples, and the advisory lock that lets only one orchestrator drive a change."""

from __future__ import annotations

import json
import os
import socket
import uuid
import zlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from ig.events.v1 import events_pb2
from ig_common.events.outbox import enqueue

from ig_migration.domain.phases import Phase
from ig_migration.events import phase_changed
from ig_migration.store import SCHEMA, LockHeld

Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
# First half of the two-key advisory lock: "this is a migration change", second half: the change's hash.
LOCK_NAMESPACE = 0x1A7E


@dataclass(frozen=True)
class ChangeRow:
    change: str
    plan_yaml: str
    plan_sha256: str
    phase: Phase
    state: str
    cutover_committed: bool
    owner: str | None
    detail: str
    updated_at: datetime
    submitted_by: tuple[str, ...] = ()
    submitter_actor: str = ""
    signature: str = ""
    approved_by: str | None = None
    run_id: str = ""


@dataclass(frozen=True)
class Checkpoint:
    last_key: int
    end_key: int
    done: int
    total: int
    batches: int
    active_seconds: float
    throttled_seconds: float
    updated_at: datetime


def change_lock_key(change: str) -> int:
    # crc32 is stable across processes and Python versions (hash() is salted); folded into a signed int4.
    value = zlib.crc32(change.encode("utf-8"))
    return value - (1 << 32) if value >= (1 << 31) else value


def orchestrator_identity() -> str:
    return f"ig-migrate@{socket.gethostname()}:{os.getpid()}"


async def try_lock(conn: Conn, change: str) -> None:
    """Take the change's session advisory lock on ``conn`` (held for the connection's life) or say who has it."""
    key = change_lock_key(change)
    await conn.execute("SELECT set_config('application_name', $1, false)", orchestrator_identity())
    if await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", LOCK_NAMESPACE, key):
        return
    holder = await conn.fetchrow(
        """SELECT a.pid, a.application_name, a.client_addr::text AS addr, a.backend_start
           FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
           WHERE l.locktype = 'advisory' AND l.classid = $1 AND l.objid = $2::oid AND l.objsubid = 2
             AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())""",
        LOCK_NAMESPACE, key & 0xFFFFFFFF)
    if holder is None:
        raise LockHeld(f"change {change} is locked by another orchestrator (it released just now; retry)")
    raise LockHeld(f"change {change} is being run by {holder['application_name'] or 'an unnamed session'} "
                   f"(PostgreSQL backend pid {holder['pid']}, client {holder['addr'] or 'local socket'}, "
                   f"connected since {holder['backend_start'].isoformat()})")


async def save_plan(conn: Conn, change: str, plan_yaml: str, sha256: str, submitters: tuple[str, ...] = (),
                    actor: str = "", signature: str = "") -> bool:
    """Record a submitted plan. The same plan again is a no-op while the change is under way, except that its
    submitters are added (none of them may approve it) and a new signature replaces the old; a finished change
    (completed, backed out, failed) starts afresh; a different plan for a change under way is refused (False)."""
    insert = (f"INSERT INTO {SCHEMA}.changes (change, plan_yaml, plan_sha256, submitted_by, submitter_actor, "
              f"signature) VALUES ($1, $2, $3, $4::text[], $5, $6)")
    row = await conn.fetchrow(f"SELECT plan_sha256, phase FROM {SCHEMA}.changes WHERE change = $1", change)
    if row is None:
        await conn.execute(insert, change, plan_yaml, sha256, list(submitters), actor, signature)
        return True
    finished = row["phase"] in (Phase.BACKED_OUT.value, Phase.COMPLETED.value, Phase.FAILED.value)
    if row["plan_sha256"] == sha256 and not finished:
        # Resubmitting the plan of a change under way changes nothing else (a restart resumes it).
        await conn.execute(
            f"""UPDATE {SCHEMA}.changes SET
                    submitted_by = ARRAY(SELECT DISTINCT unnest(submitted_by || $2::text[]) ORDER BY 1),
                    signature = CASE WHEN $3 = '' THEN signature ELSE $3 END
                WHERE change = $1""", change, list(submitters), signature)
        return True
    if finished or row["phase"] in (Phase.SUBMITTED.value, Phase.PREFLIGHT.value):
        async with conn.transaction():
            await conn.execute(f"DELETE FROM {SCHEMA}.changes WHERE change = $1", change)
            await conn.execute(insert, change, plan_yaml, sha256, list(submitters), actor, signature)
        return True
    return False


async def record_approval(conn: Conn, change: str, signature: str, approver: str) -> None:
    await conn.execute(f"UPDATE {SCHEMA}.changes SET signature = $2, approved_by = $3 WHERE change = $1",
                       change, signature, approver)


async def load_change(conn: Conn, change: str) -> ChangeRow | None:
    row = await conn.fetchrow(f"SELECT * FROM {SCHEMA}.changes WHERE change = $1", change)
    if row is None:
        return None
    return ChangeRow(row["change"], row["plan_yaml"], row["plan_sha256"], Phase(row["phase"]), row["state"],
                     row["cutover_committed"], row["owner"], row["detail"], row["updated_at"],
                     tuple(row["submitted_by"]), row["submitter_actor"], row["signature"], row["approved_by"],
                     row["run_id"])


def new_run_id() -> str:
    return "run_" + uuid.uuid4().hex


async def start_run(conn: Conn, change: str) -> str:
    """Mint the id of the run that starts now; its transitions' events carry it."""
    run_id = new_run_id()
    await conn.execute(f"UPDATE {SCHEMA}.changes SET run_id = $2 WHERE change = $1", change, run_id)
    return run_id


async def set_state(conn: Conn, change: str, state: str, detail: str = "", owner: str | None = None) -> None:
    await conn.execute(
        f"UPDATE {SCHEMA}.changes SET state = $2, detail = $3, owner = coalesce($4, owner), updated_at = now() "
        f"WHERE change = $1", change, state, detail, owner)


async def record_transition(conn: Conn, change: str, from_phase: Phase, to_phase: Phase, detail: str) -> None:
    """Phase row, timeline entry and the ig.migration.v1 event in the caller's transaction. The event carries the
    change's latest run id (a backout outside a run: the run it undoes)."""
    run_id = await conn.fetchval(f"UPDATE {SCHEMA}.changes SET phase = $2, detail = $3, updated_at = now() "
                                 f"WHERE change = $1 RETURNING run_id", change, to_phase.value, detail)
    await conn.execute(f"INSERT INTO {SCHEMA}.timeline (change, from_phase, to_phase, detail) VALUES ($1,$2,$3,$4)",
                       change, from_phase.value, to_phase.value, detail)
    await enqueue(conn, SCHEMA, phase_changed(events_pb2.MigrationPhaseChanged(
        change=change, from_phase=from_phase.value, to_phase=to_phase.value, detail=detail, run_id=run_id or "")))


async def save_result(conn: Conn, change: str, kind: str, body: dict[str, Any]) -> None:
    await conn.execute(
        f"""INSERT INTO {SCHEMA}.results (change, kind, body) VALUES ($1, $2, $3::jsonb)
            ON CONFLICT (change, kind) DO UPDATE SET body = EXCLUDED.body, at = now()""",
        change, kind, json.dumps(body, default=str))


async def load_results(conn: Conn, change: str) -> dict[str, Any]:
    rows = await conn.fetch(f"SELECT kind, body::text AS body FROM {SCHEMA}.results WHERE change = $1", change)
    return {r["kind"]: json.loads(r["body"]) for r in rows}


async def timeline(conn: Conn, change: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(f"SELECT at, from_phase, to_phase, detail FROM {SCHEMA}.timeline WHERE change = $1 "
                            f"ORDER BY id", change)
    return [{"at": r["at"].isoformat(), "from": r["from_phase"], "to": r["to_phase"], "detail": r["detail"]}
            for r in rows]


async def start_checkpoint(conn: Conn, change: str, last_key: int, end_key: int, total: int) -> None:
    await conn.execute(
        f"""INSERT INTO {SCHEMA}.checkpoints (change, last_key, end_key, total) VALUES ($1, $2, $3, $4)
            ON CONFLICT (change) DO NOTHING""", change, last_key, end_key, total)


async def load_checkpoint(conn: Conn, change: str) -> Checkpoint | None:
    row = await conn.fetchrow(f"SELECT * FROM {SCHEMA}.checkpoints WHERE change = $1", change)
    if row is None:
        return None
    return Checkpoint(row["last_key"], row["end_key"], row["done"], row["total"], row["batches"],
                      row["active_seconds"], row["throttled_seconds"], row["updated_at"])


async def advance_checkpoint(conn: Conn, change: str, lo: int, hi: int, rows: int, seconds: float,
                             throttled: float) -> int:
    """Record a copied batch; called in the batch's own transaction. Returns the batch number."""
    batch_no = int(await conn.fetchval(
        f"""UPDATE {SCHEMA}.checkpoints SET last_key = $2, done = done + $3, batches = batches + 1,
                   active_seconds = active_seconds + $4, throttled_seconds = throttled_seconds + $5,
                   updated_at = now()
            WHERE change = $1 RETURNING batches""", change, hi, rows, seconds, throttled))
    await conn.execute(f"INSERT INTO {SCHEMA}.batches (change, batch_no, lo_key, hi_key, rows) VALUES ($1,$2,$3,$4,$5)",
                       change, batch_no, lo, hi, rows)
    return batch_no


async def batch_ranges(conn: Conn, change: str, batch_numbers: list[int]) -> list[tuple[int, int, int]]:
    rows = await conn.fetch(f"SELECT batch_no, lo_key, hi_key FROM {SCHEMA}.batches WHERE change = $1 "
                            f"AND batch_no = ANY($2::int[]) ORDER BY batch_no", change, batch_numbers)
    return [(r["batch_no"], r["lo_key"], r["hi_key"]) for r in rows]


async def mark_batches(conn: Conn, change: str, batch_numbers: list[int], state: str) -> None:
    await conn.execute(f"UPDATE {SCHEMA}.batches SET state = $3 WHERE change = $1 AND batch_no = ANY($2::int[])",
                       change, batch_numbers, state)


async def add_samples(conn: Conn, change: str, metric: str, side: str, values: list[float]) -> None:
    await conn.executemany(f"INSERT INTO {SCHEMA}.samples (change, metric, side, value) VALUES ($1, $2, $3, $4)",
                           [(change, metric, side, v) for v in values])


async def clear_samples(conn: Conn, change: str, side: str) -> None:
    await conn.execute(f"DELETE FROM {SCHEMA}.samples WHERE change = $1 AND side = $2", change, side)


async def samples(conn: Conn, change: str, metric: str, side: str) -> list[float]:
    rows = await conn.fetch(f"SELECT value FROM {SCHEMA}.samples WHERE change = $1 AND metric = $2 AND side = $3 "
                            f"ORDER BY at", change, metric, side)
    return [float(r["value"]) for r in rows]
