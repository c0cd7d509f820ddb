"""Failover and failback, measured: inject the failure, detect it, promote, move the clients, count the loss."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from ig_region_test import network
from ig_region_test.measure import Rpo, Rto, Verdict, measure_rpo, measure_rto
from ig_region_test.regions import SLOT, Region, Regions, set_synchronous_standby, wait_streaming
from ig_region_test.timeline import Timeline
from ig_region_test.workload import GLOBAL_DB, Router, SequencedWriter

PROBE_INTERVAL = 0.5
PROBE_TIMEOUT = 0.5
MISSES_BEFORE_FAILOVER = 3  # ~1.5 s of silence; Patroni's default TTL is 30 s


@dataclass(frozen=True)
class Options:
    synchronous: bool
    failure: str  # partition | kill | partition-both | switchover
    time_limit: float
    isolation_delay: float
    warmup: float
    write_interval: float
    write_timeout: float
    writes_after_failover: int


@dataclass
class PhaseResult:
    name: str
    old_primary: str
    new_primary: str
    failure: str
    next_seq: int = 1  # sequence numbers continue across phases: a sequence number is never reused
    failure_at: float | None = None
    detected_at: float | None = None
    promoted_at: float | None = None
    clients_moved_at: float | None = None
    rpo: Rpo | None = None
    rto: Rto | None = None
    acknowledged: int = 0
    failed_writes: int = 0
    notes: list[str] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "phase": self.name, "old_primary": self.old_primary, "new_primary": self.new_primary,
            "failure": self.failure, "failure_at": self.failure_at, "detected_at": self.detected_at,
            "promoted_at": self.promoted_at, "clients_moved_at": self.clients_moved_at,
            "rto_seconds": self.rto.seconds if self.rto else None,
            "rto_exceeded": self.rto.exceeded_time_limit if self.rto else True,
            "time_limit_seconds": self.rto.time_limit if self.rto else None,
            "rpo_lost_writes": self.rpo.lost_writes if self.rpo else None,
            "rpo_lost_seconds": self.rpo.lost_seconds if self.rpo else None,
            "rpo_lost_sequence_numbers": list(self.rpo.lost_sequence_numbers[:50]) if self.rpo else None,
            "acknowledged_writes": self.acknowledged,
            "acknowledged_before_failure": self.rpo.acknowledged_before_failure if self.rpo else None,
            "failed_or_ambiguous_writes": self.failed_writes, "notes": self.notes,
            "verdicts": [{"name": v.name, "passed": v.passed, "message": v.message} for v in self.verdicts],
        }


async def _reachable(dsn: str) -> bool:
    try:
        conn = await asyncpg.connect(dsn, timeout=PROBE_TIMEOUT, command_timeout=PROBE_TIMEOUT)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False
    try:
        await conn.fetchval("SELECT 1")
        return True
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False
    finally:
        conn.terminate()


async def _inject(env: Regions, old: Region, new: Region, failure: str, options: Options, timeline: Timeline,
                  phase: str) -> float:
    topology = env.topology
    if failure in ("partition", "partition-both") and topology.mode != "netns":
        failure = "kill"
        timeline.add(phase, "partition_unavailable", note="loopback fallback: killing the primary instead")
    if failure == "kill":
        at = timeline.now()
        pid = await asyncio.to_thread(old.global_pg.kill)
        timeline.add(phase, "failure_injected", at=at, kind="kill", detail=f"SIGKILL postmaster {pid} of "
                     f"{old.name}")
        return at
    if failure == "switchover":
        at = timeline.add(phase, "failure_injected", kind="switchover",
                          detail=f"planned: clean shutdown of {old.name} (sends all WAL to the replica first)")
        await asyncio.to_thread(old.global_pg.stop, "fast")
        timeline.add(phase, "old_primary_stopped", region=old.name)
        return at
    at = timeline.now()
    done = await asyncio.to_thread(network.set_inter_region_link, topology, False)
    timeline.add(phase, "failure_injected", at=at, kind=failure, detail=f"inter-region link cut: {done}")
    await asyncio.sleep(options.isolation_delay)
    done = await asyncio.to_thread(network.set_client_link, topology, old.net, False)
    timeline.add(phase, "region_isolated", region=old.name, detail=done)
    if failure == "partition-both":
        done = await asyncio.to_thread(network.set_client_link, topology, new.net, False)
        timeline.add(phase, "region_isolated", region=new.name, detail=done)
    return at


async def _detect(old: Region, failure_at: float, deadline: float, timeline: Timeline, phase: str,
                  planned: bool) -> float | None:
    if planned:
        return timeline.now()
    misses = 0
    while timeline.now() < deadline:
        misses = 0 if await _reachable(old.global_pg.dsn()) else misses + 1
        if misses >= MISSES_BEFORE_FAILOVER:
            return timeline.add(phase, "failure_detected", region=old.name,
                                detail=f"{misses} health probes missed ({PROBE_INTERVAL}s apart)")
        await asyncio.sleep(PROBE_INTERVAL)
    return None


async def _promote(new: Region, deadline: float, timeline: Timeline, phase: str) -> float | None:
    last_error = ""
    while timeline.now() < deadline:
        try:
            conn = await asyncpg.connect(new.global_pg.dsn(), timeout=1, command_timeout=15)
            try:
                promoted = await conn.fetchval("SELECT pg_promote(wait => true, wait_seconds => 10)")
                in_recovery = await conn.fetchval("SELECT pg_is_in_recovery()")
            finally:
                conn.terminate()
            if promoted or not in_recovery:
                return timeline.add(phase, "promoted", region=new.name, query="SELECT pg_promote(true, 10)")
            last_error = "pg_promote returned false"
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            last_error = f"{type(error).__name__}: {error}"
        await asyncio.sleep(0.3)
    timeline.add(phase, "promotion_failed", region=new.name, last_error=last_error[:200])
    return None


async def run_phase(env: Regions, name: str, old: Region, new: Region, failure: str, options: Options,
                    timeline: Timeline, first_seq: int = 1) -> PhaseResult:
    result = PhaseResult(name, old.name, new.name, failure, next_seq=first_seq)
    router = Router(old.name, old.global_pg.dsn(GLOBAL_DB))
    writer = SequencedWriter(router, timeline, options.synchronous, options.write_interval, options.write_timeout,
                             tenant=f"global-{name}", next_seq=first_seq)
    stop = asyncio.Event()
    writing = asyncio.create_task(writer.run(stop))
    try:
        timeline.add(name, "workload_started", primary=old.name, synchronous_commit="remote_apply"
                     if options.synchronous else "local (asynchronous replication)")
        await asyncio.sleep(options.warmup)
        if not writer.acked_in(old.name):
            raise RuntimeError(f"the workload could not write to {old.name} during warm-up")
        result.failure_at = await _inject(env, old, new, failure, options, timeline, name)
        deadline = result.failure_at + options.time_limit
        result.detected_at = await _detect(old, result.failure_at, deadline, timeline, name,
                                           planned=failure == "switchover")
        if result.detected_at is not None:
            result.promoted_at = await _promote(new, deadline, timeline, name)
        if result.promoted_at is not None:
            router.move(new.name, new.global_pg.dsn(GLOBAL_DB))
            result.clients_moved_at = timeline.add(name, "clients_moved", to=new.name)
            while timeline.now() < deadline and not writing.done():
                if len(writer.acked_in(new.name)) >= options.writes_after_failover:
                    break
                await asyncio.sleep(0.05)
        if timeline.now() >= deadline:
            timeline.add(name, "time_limit_reached", limit_seconds=options.time_limit)
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writing, timeout=options.write_timeout + 5)
    timeline.add(name, "workload_stopped", acknowledged=len(writer.acks), failed=len(writer.failed))
    result.acknowledged, result.failed_writes = len(writer.acks), len(writer.failed)
    result.next_seq = writer.next_seq
    assert result.failure_at is not None
    result.rto = measure_rto(result.failure_at, writer.acks, new.name, options.time_limit)
    present = await _present_sequence_numbers(new, old.name)
    if present is None:
        result.notes.append(f"RPO not measurable: {new.name} cannot be read")
    else:
        result.rpo = measure_rpo(writer.acks, old.name, present)
        timeline.add(name, "rpo_measured", query="SELECT seq FROM global.writes WHERE region = $1",
                     lost_writes=result.rpo.lost_writes, lost_seconds=result.rpo.lost_seconds)
    return result


async def _present_sequence_numbers(region: Region, written_in: str) -> list[int] | None:
    try:
        conn = await asyncpg.connect(region.global_pg.dsn(GLOBAL_DB), timeout=3, command_timeout=10)
    except (OSError, TimeoutError, asyncpg.PostgresError):
        return None
    try:
        return [r["seq"] for r in await conn.fetch("SELECT seq FROM global.writes WHERE region = $1", written_in)]
    finally:
        await conn.close()


async def heal_and_rebuild(env: Regions, stale: Region, primary: Region, synchronous: bool, timeline: Timeline,
                           phase: str) -> None:
    """Restore the links, fence the stale primary and rebuild it as a replica of ``primary``."""
    topology = env.topology
    await asyncio.to_thread(network.set_inter_region_link, topology, True)
    for region in (env.a, env.b):
        await asyncio.to_thread(network.set_client_link, topology, region.net, True)
    timeline.add(phase, "network_healed")
    await asyncio.to_thread(stale.global_pg.stop, "immediate")
    timeline.add(phase, "stale_primary_fenced", region=stale.name, detail="pg_ctl stop -m immediate, data discarded")
    await asyncio.to_thread(stale.global_pg.clone_from, primary.global_pg, SLOT[stale.name])
    await asyncio.to_thread(stale.global_pg.start)
    conn = await asyncpg.connect(primary.global_pg.dsn(), timeout=5)
    try:
        await set_synchronous_standby(conn, SLOT[stale.name] if synchronous else "")
    finally:
        await conn.close()
    await wait_streaming(primary.global_pg, SLOT[stale.name], stale.global_pg, within=60)
    timeline.add(phase, "replica_rebuilt", replica=stale.name, primary=primary.name, method="pg_basebackup")
