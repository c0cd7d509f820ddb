"""The flag registry in PostgreSQL: current values, full history, and a ``ig.flags.v1`` event per change."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import asyncpg
from ig_common.events.outbox import Executor, enqueue
from prometheus_client import Counter

from ig_burn.domain.flags import Flag, FlagValue, same_value
from ig_burn.events.builders import flag_changed

# Incremented by callers after their transaction commits (dashboards annotate flag changes with it).
# Labelled by flag and by kind of changer, never by the changer's name: a label value a caller controls would grow
# series without bound (who changed it is in the flag's history).
FLAG_CHANGES = Counter("ig_flags_changes_total", "Committed flag changes, by flag and by source (automation or admin)",
                       ["key", "source"])


def _decode(raw: Any) -> FlagValue:
    value: FlagValue = json.loads(raw)
    return value


def row_to_flag(row: asyncpg.Record, value_column: str = "value") -> Flag:
    return Flag(key=row["key"], value=_decode(row[value_column]), pinned=row["pinned"], changed_by=row["changed_by"],
                reason=row["reason"], changed_at=row["changed_at"], version=row["version"])


class FlagStore:
    def __init__(self, schema: str) -> None:
        self.schema = schema

    async def get(self, conn: Executor, key: str, *, for_update: bool = False) -> Flag | None:
        lock = " FOR UPDATE" if for_update else ""
        row = await conn.fetchrow(f"SELECT * FROM {self.schema}.flags WHERE key = $1{lock}", key)
        return row_to_flag(row) if row else None

    async def list_flags(self, conn: Executor, keys: Sequence[str] | None = None) -> list[Flag]:
        if keys is None:
            rows = await conn.fetch(f"SELECT * FROM {self.schema}.flags ORDER BY key")
        else:
            rows = await conn.fetch(f"SELECT * FROM {self.schema}.flags WHERE key = ANY($1) ORDER BY key FOR UPDATE",
                                    list(keys))
        return [row_to_flag(r) for r in rows]

    async def history(self, conn: Executor, key: str, limit: int = 1000) -> list[Flag]:
        rows = await conn.fetch(
            f"""SELECT key, new_value, pinned, changed_by, reason, changed_at, version
                FROM {self.schema}.flag_history WHERE key = $1 ORDER BY version DESC LIMIT $2""", key, limit)
        return [row_to_flag(r, "new_value") for r in rows]

    async def recent_changes(self, conn: Executor, limit: int = 50) -> list[Flag]:
        rows = await conn.fetch(
            f"""SELECT key, new_value, pinned, changed_by, reason, changed_at, version
                FROM {self.schema}.flag_history ORDER BY id DESC LIMIT $1""", limit)
        return [row_to_flag(r, "new_value") for r in rows]

    async def set(self, conn: Executor, key: str, value: FlagValue, *, pinned: bool, changed_by: str,
                  reason: str) -> tuple[Flag, bool]:
        """Write a flag inside the caller's transaction; returns (flag, changed). No-op writes record nothing."""
        current = await self.get(conn, key, for_update=True)
        if current is not None and current.pinned == pinned and same_value(current.value, value):
            return current, False
        version = 1 if current is None else current.version + 1
        encoded = json.dumps(value)
        row = await conn.fetchrow(
            f"""INSERT INTO {self.schema}.flags (key, value, pinned, changed_by, reason, changed_at, version)
                VALUES ($1, $2::jsonb, $3, $4, $5, now(), $6)
                ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, pinned = EXCLUDED.pinned,
                    changed_by = EXCLUDED.changed_by, reason = EXCLUDED.reason, changed_at = EXCLUDED.changed_at,
                    version = EXCLUDED.version
                RETURNING *""",
            key, encoded, pinned, changed_by, reason, version)
        assert row is not None  # INSERT ... RETURNING always returns the row
        await conn.execute(
            f"""INSERT INTO {self.schema}.flag_history
                    (key, old_value, new_value, pinned, changed_by, reason, changed_at, version)
                VALUES ($1, $2::jsonb, $3::jsonb, $4, $5, $6, $7, $8)""",
            key, json.dumps(current.value) if current else None, encoded, pinned, changed_by, reason,
            row["changed_at"], version)
        await enqueue(conn, self.schema, flag_changed(key, current.value if current else None, value,
                                                      changed_by, reason))
        return row_to_flag(row), True
