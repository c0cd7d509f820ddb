"""The clients: a sequenced writer on global data, and writers for residency-pinned tenants in their home region.

The sequenced writer sends one INSERT per sequence number to whichever region the router names as primary and
records an acknowledgement only when the commit returned. A write whose outcome is unknown (timeout, broken
connection) is never retried under the same number: a retry could find the row committed locally on a primary
that never replicated it and wrongly count it as acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from ig.events.v1 import events_pb2
from ig_common.db import prepare_schema
from ig_common.events.envelope import OutgoingEvent
from ig_common.events.outbox import OutboxRelay, enqueue
from ig_common.events.topics import AUDIT_ACCESS
from ig_infra.kafka_reading import identity_tls

from ig_region_test.measure import Ack
from ig_region_test.procs import KAFKA_CLIENT_IDENTITY
from ig_region_test.timeline import Timeline

GLOBAL_DB = "ig_global"
RESIDENT_SCHEMA = "resident"
MIGRATIONS = Path(__file__).parent / "migrations"

GLOBAL_SCHEMA_SQL = """
CREATE SCHEMA IF NOT EXISTS global;
CREATE TABLE IF NOT EXISTS global.tenants (tenant text PRIMARY KEY, home_region text, pinned boolean NOT NULL);
CREATE TABLE IF NOT EXISTS global.writes (
    seq bigint PRIMARY KEY, region text NOT NULL, tenant text NOT NULL, written_at timestamptz NOT NULL DEFAULT now()
);
"""


class Router:
    """Where clients send writes: the current primary (a DNS name or global load balancer in production)."""

    def __init__(self, region: str, dsn: str) -> None:
        self.region = region
        self.dsn = dsn

    def move(self, region: str, dsn: str) -> None:
        self.region, self.dsn = region, dsn


@dataclass
class SequencedWriter:
    router: Router
    timeline: Timeline
    synchronous: bool
    interval: float
    timeout: float
    tenant: str = "global-workload"
    acks: list[Ack] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    next_seq: int = 1

    async def run(self, stop: asyncio.Event) -> None:
        conn: asyncpg.Connection | None = None
        conn_region = ""
        failing = False
        while not stop.is_set():
            region, dsn = self.router.region, self.router.dsn
            seq = self.next_seq
            try:
                if conn is None or conn_region != region:
                    await _drop(conn)
                    conn = None
                    conn = await asyncpg.connect(dsn, timeout=self.timeout, command_timeout=self.timeout)
                    conn_region = region
                    mode = "remote_apply" if self.synchronous else "local"
                    await conn.execute(f"SET synchronous_commit = {mode}")
                self.next_seq += 1
                await conn.execute("INSERT INTO global.writes (seq, region, tenant) VALUES ($1, $2, $3)",
                                   seq, region, self.tenant)
                ack = Ack(seq, region, self.timeline.now())
                if not self.acks or self.acks[-1].region != region or failing:
                    self.timeline.add("workload", "write_acknowledged", at=ack.acked_at, seq=seq, region=region,
                                      note="first acknowledged write" + (" after failures" if failing else ""))
                self.acks.append(ack)
                failing = False
            except Exception as error:  # any failure of a client write: unacknowledged, whatever its type
                if seq == self.next_seq - 1:
                    self.failed.append(seq)
                if not failing:
                    self.timeline.add("workload", "write_failed", seq=seq, region=region,
                                      error=f"{type(error).__name__}: {error}"[:200])
                failing = True
                await _drop(conn)
                conn = None
                await asyncio.sleep(0.05)
            await asyncio.sleep(self.interval)
        await _drop(conn)

    def acked_in(self, region: str) -> list[Ack]:
        return [ack for ack in self.acks if ack.region == region]


async def _drop(conn: asyncpg.Connection | None) -> None:
    if conn is not None:
        conn.terminate()  # no goodbye over a link that may be gone


@dataclass
class PinnedTenantWriter:
    """Writes a pinned tenant's records in its home region, each with its event through the outbox."""

    tenant: str
    home: str
    dsn: str
    bootstrap: str | None  # None: no Kafka in this run, records only
    marker: str
    written: int = 0
    errors: int = 0
    published: int | None = None  # events the relay marked published, read back at the end

    async def prepare(self) -> None:
        pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=2)
        try:
            await prepare_schema(pool, RESIDENT_SCHEMA, MIGRATIONS)
        finally:
            await pool.close()

    async def run(self, stop: asyncio.Event, interval: float) -> None:
        pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=3, timeout=2, command_timeout=2)
        relay = OutboxRelay(pool, RESIDENT_SCHEMA, self.bootstrap, tls=identity_tls(KAFKA_CLIENT_IDENTITY),
                            idle_interval=0.05) if self.bootstrap else None
        relay_task = asyncio.create_task(relay.run(stop)) if relay else None
        try:
            while not stop.is_set():
                try:
                    await self._write_one(pool)
                    if relay:
                        relay.wake()
                except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    self.errors += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=interval)
            # Give the relay a moment to publish what is left before stopping it.
            with contextlib.suppress(Exception):
                for _ in range(40 if relay else 0):
                    if await pool.fetchval(f"SELECT count(*) FROM {RESIDENT_SCHEMA}.outbox "
                                           "WHERE published_at IS NULL") == 0:
                        break
                    await relay.relay_once()  # type: ignore[union-attr]
                self.published = await pool.fetchval(f"SELECT count(*) FROM {RESIDENT_SCHEMA}.outbox "
                                                     "WHERE published_at IS NOT NULL")
        finally:
            if relay_task:
                relay_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await relay_task
            pool.terminate()  # its region may be partitioned away: no graceful goodbye

    async def _write_one(self, pool: asyncpg.Pool) -> None:
        number = self.written + 1
        record_id = f"{self.tenant}-rec-{number}"
        payload = f"{self.marker} record {number} of tenant {self.tenant}"
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(f"INSERT INTO {RESIDENT_SCHEMA}.records (id, tenant, home_region, payload) "
                               "VALUES ($1, $2, $3, $4)", record_id, self.tenant, self.home, payload)
            await enqueue(conn, RESIDENT_SCHEMA, OutgoingEvent(
                topic=AUDIT_ACCESS, type="ig.audit.accessed.v1", source=f"/region-test/{self.home}",
                subject=record_id, key=self.tenant,
                payload=events_pb2.AuditAccess(user="region-test", tenant=self.tenant, action="write",
                                               object=f"{record_id} {self.marker}"),
            ))
        self.written = number
