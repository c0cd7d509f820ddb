"""The `assets` workload the example plan migrates: schema, seed rows and a concurrent writer that keeps
inserting, updating and deleting through the versioned view. Used by the e2e tests and the benchmark."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

import asyncpg

ASSETS_SCHEMA = """
-- A role that owns app (made for it) may lack CREATE on the database, which CREATE SCHEMA IF NOT EXISTS checks first.
DO $$ BEGIN IF to_regnamespace('app') IS NULL THEN CREATE SCHEMA app; END IF; END $$;
CREATE TABLE public.assets (
    id         bigserial PRIMARY KEY,
    tenant     text NOT NULL,
    owner      text NOT NULL,
    kind       text NOT NULL,
    name       text NOT NULL,
    payload    jsonb NOT NULL DEFAULT '{}',
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX assets_owner_v2 ON public.assets (owner);
CREATE VIEW app.assets AS SELECT id, tenant, owner, kind, name, payload, updated_at FROM public.assets;
"""


async def create_assets(conn: asyncpg.Connection, rows: int) -> None:
    await conn.execute(ASSETS_SCHEMA)
    await seed(conn, "public.assets", rows)


async def seed(conn: asyncpg.Connection, table: str, rows: int) -> None:
    await conn.execute(
        f"""INSERT INTO {table} (tenant, owner, kind, name, payload)
            SELECT 'tenant-' || (g % 10), 'owner-' || (g % 100), (ARRAY['doc', 'img', 'vid'])[g % 3 + 1],
                   'asset ' || g, jsonb_build_object('n', g, 'tags', jsonb_build_array('a', 'b'))
            FROM generate_series(1, $1::int) g""", rows)
    await conn.execute(f"ANALYZE {table}")


@dataclass(frozen=True)
class Loss:
    """An acknowledged write the table does not show: the row's name as last acknowledged (None: deleted) and what
    the table holds instead (None: no row)."""

    id: int
    acknowledged: str | None
    found: str | None


def losses(acknowledged: dict[int, str | None], found: dict[int, str]) -> list[Loss]:
    """Every key whose last acknowledged write is not what ``found`` (key -> name, read after the writer stopped)
    shows: an acknowledged insert or update missing or changed, or an acknowledged delete still present."""
    return [Loss(key, name, found.get(key)) for key, name in sorted(acknowledged.items()) if found.get(key) != name]


@dataclass
class Writer:
    """Keeps writing through ``view`` until stopped: 60 % updates, 30 % inserts, 10 % deletes.

    ``acknowledged`` is the writer's own record: for every row a write of it was acknowledged (the statement
    committed and touched the row), the name that write left, or None for a delete. It is what a check of "no
    acknowledged write lost" compares the table with once the writer has stopped (``losses``)."""

    dsn: str
    view: str = "app.assets"
    pause_seconds: float = 0.002
    seed: int = 7
    inserts: int = 0
    updates: int = 0
    deletes: int = 0
    errors: int = 0
    last_error: str = ""
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    acknowledged: dict[int, str | None] = field(default_factory=dict)

    @property
    def writes(self) -> int:
        return self.inserts + self.updates + self.deletes

    async def run(self) -> None:
        rng = random.Random(self.seed)
        conn = await asyncpg.connect(self.dsn)
        try:
            top = int(await conn.fetchval(f"SELECT coalesce(max(id), 1) FROM {self.view}"))
            while not self.stop.is_set():
                roll = rng.random()
                try:
                    if roll < 0.6:
                        key, name = rng.randint(1, top), f"renamed {rng.random():.6f}"
                        status = await conn.execute(
                            f"UPDATE {self.view} SET name = $2, updated_at = now() WHERE id = $1", key, name)
                        self.updates += 1
                        if status.endswith(" 1"):
                            self.acknowledged[key] = name
                    elif roll < 0.9:
                        top = int(await conn.fetchval(
                            f"INSERT INTO {self.view} (tenant, owner, kind, name) VALUES ($1, $2, 'doc', $3) "
                            f"RETURNING id", f"tenant-{rng.randint(0, 9)}", f"owner-{rng.randint(0, 99)}",
                            "new asset"))
                        self.inserts += 1
                        self.acknowledged[top] = "new asset"
                    else:
                        key = rng.randint(1, top)
                        status = await conn.execute(f"DELETE FROM {self.view} WHERE id = $1", key)
                        self.deletes += 1
                        if status.endswith(" 1"):
                            self.acknowledged[key] = None
                except asyncpg.PostgresError as error:
                    self.errors += 1
                    self.last_error = str(error)
                if self.pause_seconds:
                    await asyncio.sleep(self.pause_seconds)
        finally:
            await conn.close()
