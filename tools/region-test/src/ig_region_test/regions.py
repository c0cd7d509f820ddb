"""Bring up the two regions: network, PostgreSQL (global primary/replica + resident clusters), Kafka, OPA, policy."""

from __future__ import annotations

import asyncio
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from ig_infra.paths import Paths

from ig_region_test import network
from ig_region_test.network import RegionNet, Topology
from ig_region_test.pg import GLOBAL_PORT, RESIDENT_PORT, PgInstance, cluster_template
from ig_region_test.procs import RegionKafka, RegionOpa, RegionPolicyService
from ig_region_test.residency import PinnedTenant
from ig_region_test.runstate import RunState
from ig_region_test.timeline import Timeline
from ig_region_test.workload import GLOBAL_DB, GLOBAL_SCHEMA_SQL

SLOT = {"region-a": "region_a", "region-b": "region_b"}


@dataclass
class Region:
    net: RegionNet
    global_pg: PgInstance
    resident_pg: PgInstance
    kafka: RegionKafka | None = None
    opa: RegionOpa | None = None
    policy: RegionPolicyService | None = None

    @property
    def name(self) -> str:
        return self.net.name


@dataclass
class Regions:
    topology: Topology
    a: Region
    b: Region
    root: Path
    notes: list[str] = field(default_factory=list)

    def get(self, name: str) -> Region:
        return self.a if name == self.a.name else self.b

    def other(self, name: str) -> Region:
        return self.b if name == self.a.name else self.a

    def data_dirs(self, region: Region) -> list[Path]:
        dirs = [region.global_pg.data, region.resident_pg.data]
        if region.kafka is not None:
            dirs.append(region.kafka.data)
        return dirs


def build(topology: Topology, state: RunState, timeline: Timeline, *, synchronous: bool, with_kafka: bool,
          with_policy: bool, policies: Path, tenants: list[PinnedTenant]) -> Regions:
    root = state.dir
    regions = []
    for net in topology.regions:
        regions.append(Region(net, PgInstance(net, "global", GLOBAL_PORT, root, state),
                              PgInstance(net, "resident", RESIDENT_PORT, root, state)))
    env = Regions(topology, regions[0], regions[1], root)
    env.notes += network.create(topology)
    timeline.add("setup", "network_ready", mode=topology.mode, note=topology.note,
                 addresses={r.name: {"client": r.client_host, "inter_region": r.peer_host} for r in topology.regions})
    paths = Paths.from_environment()
    if with_kafka:  # the slowest to start: launch first, wait last
        for region in (env.a, env.b):
            region.kafka = RegionKafka(region.net, "kafka", root, state)
            region.kafka.start(paths)
    template = cluster_template(state.base)  # kept between runs; /root/.cache is not readable by postgres

    def start_from_template(pg: PgInstance) -> None:
        pg.create_from(template)
        pg.configure()
        pg.start()

    def start_global_pair() -> None:
        start_from_template(env.a.global_pg)
        timeline.add("setup", "primary_started", region=env.a.name)
        env.b.global_pg.clone_from(env.a.global_pg, SLOT["region-b"])
        env.b.global_pg.start()

    with ThreadPoolExecutor(max_workers=3) as pool:  # the clusters are independent: start them side by side
        started = [pool.submit(start_global_pair), pool.submit(start_from_template, env.a.resident_pg),
                   pool.submit(start_from_template, env.b.resident_pg)]
        for future in started:
            future.result()
    timeline.add("setup", "postgres_started", clusters=4)
    asyncio.run(_prepare_global(env, synchronous))
    timeline.add("setup", "replica_streaming", replica="region-b", primary="region-a",
                 synchronous_standby_names=SLOT["region-b"] if synchronous else "")
    asyncio.run(_create_tenant_databases(env, tenants))
    if with_policy:
        for region in (env.a, env.b):
            region.opa = RegionOpa(region.net, "opa", root, state)
            region.opa.start(paths, policies)
    if with_kafka:
        for region in (env.a, env.b):
            assert region.kafka is not None
            region.kafka.wait_ready()
        asyncio.run(_create_topics(env))
        timeline.add("setup", "kafka_ready", brokers={r.name: r.kafka.bootstrap for r in (env.a, env.b) if r.kafka})
    if with_policy:
        for region in (env.a, env.b):
            assert region.opa is not None
            region.opa.wait_ready()
            region.policy = RegionPolicyService(region.net, "policy", root, state)
            bootstrap = region.kafka.bootstrap if region.kafka else f"{region.net.client_host}:9"
            region.policy.start(region.resident_pg.dsn("policy_service"), bootstrap, region.opa.url,
                                region.opa.token.token_file)
        for region in (env.a, env.b):
            assert region.policy is not None
            region.policy.wait_ready()
        timeline.add("setup", "policy_ready", services={r.name: r.policy.grpc_target for r in (env.a, env.b)
                                                        if r.policy})
    return env


async def _prepare_global(env: Regions, synchronous: bool) -> None:
    conn = await asyncpg.connect(env.a.global_pg.dsn(), timeout=10)
    try:
        await conn.execute(f"CREATE DATABASE {GLOBAL_DB}")
        if synchronous:
            await set_synchronous_standby(conn, SLOT["region-b"])
    finally:
        await conn.close()
    conn = await asyncpg.connect(env.a.global_pg.dsn(GLOBAL_DB), timeout=10)
    try:
        await conn.execute(GLOBAL_SCHEMA_SQL)
    finally:
        await conn.close()
    await wait_streaming(env.a.global_pg, SLOT["region-b"], env.b.global_pg, within=60)


async def set_synchronous_standby(conn: asyncpg.Connection, name: str) -> None:
    await conn.execute(f"ALTER SYSTEM SET synchronous_standby_names = '{name}'")
    await conn.execute("SELECT pg_reload_conf()")


async def wait_streaming(primary: PgInstance, application_name: str, replica: PgInstance, within: float) -> None:
    """Until the primary reports the replica streaming and the replica has replayed the primary's current LSN."""
    deadline = time.monotonic() + within
    while True:
        try:
            conn = await asyncpg.connect(primary.dsn(), timeout=3)
            try:
                row = await conn.fetchrow("SELECT state, pg_current_wal_lsn() AS lsn FROM pg_stat_replication "
                                          "WHERE application_name = $1", application_name)
            finally:
                await conn.close()
            if row is not None and row["state"] == "streaming":
                standby = await asyncpg.connect(replica.dsn(), timeout=3)
                try:
                    caught_up = await standby.fetchval("SELECT pg_last_wal_replay_lsn() >= $1",
                                                       row["lsn"])
                finally:
                    await standby.close()
                if caught_up:
                    return
        except (OSError, asyncpg.PostgresError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{replica.region.name} did not stream from {primary.region.name} within {within}s:"
                               f"\n{replica.tail()}")
        await asyncio.sleep(0.2)


async def _create_tenant_databases(env: Regions, tenants: list[PinnedTenant]) -> None:
    for region in (env.a, env.b):
        conn = await asyncpg.connect(region.resident_pg.dsn(), timeout=10)
        try:
            await conn.execute("CREATE DATABASE policy_service")
            for tenant in tenants:
                if tenant.home == region.name:
                    await conn.execute(f"CREATE DATABASE {tenant.database}")
        finally:
            await conn.close()
    conn = await asyncpg.connect(env.a.global_pg.dsn(GLOBAL_DB), timeout=10)
    try:
        # The directory of who lives where is global metadata; the tenants' data is not.
        await conn.executemany("INSERT INTO global.tenants (tenant, home_region, pinned) VALUES ($1, $2, true)",
                               [(t.tenant, t.home) for t in tenants])
    finally:
        await conn.close()


async def _create_topics(env: Regions) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from ig_common.events.kafka_tls import client_security
    from ig_common.events.topics import ALL_TOPICS
    from ig_infra.kafka_reading import identity_tls

    from ig_region_test.procs import KAFKA_CLIENT_IDENTITY

    for region in (env.a, env.b):
        assert region.kafka is not None
        admin = AIOKafkaAdminClient(bootstrap_servers=region.kafka.bootstrap, request_timeout_ms=10000,
                                    **client_security(identity_tls(KAFKA_CLIENT_IDENTITY)()))
        await admin.start()
        try:
            await admin.create_topics([NewTopic(t, num_partitions=1, replication_factor=1) for t in ALL_TOPICS])
        finally:
            await admin.close()


def remove_data(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
