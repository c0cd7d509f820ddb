"""Failback of the running suite after ``ig-infra failover``: region-a's processes resumed, region-a's global cluster
back as region-b's synchronous replica (pg_rewind where it applies, else a fresh base backup), then a planned
switchover so region-a is the primary again and region-b its replica: the topology `make up` built.

The switchover is a clean shutdown of region-b (a primary's fast shutdown sends all its WAL, the shutdown
checkpoint included, to its synchronous replica first), then region-a's promotion, then region-b rebuilt as
region-a's replica (pg_rewind finds nothing to rewind after a clean switchover). Nothing writes the global cluster
meanwhile but the checks here: the suite's services keep no data there.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
from ig_infra import global_switch
from ig_infra.freeze import thaw
from ig_infra.suite_network import set_inter_region_link

from ig_region_test.suite_failover import NEW, OLD, Report, SuiteRegions, load_frozen, state_file, try_write
from ig_region_test.timeline import Timeline


async def _read_seq(dsn: str, seq: int) -> bool:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        return bool(await conn.fetchval("SELECT count(*) FROM global.writes WHERE seq = $1", seq))
    finally:
        await conn.close()


async def failback(suite: SuiteRegions, timeline: Timeline) -> Report:
    report = Report()
    if suite.network:
        timeline.add("failback", "link_restored", command=set_inter_region_link(suite.network, True))
    frozen = load_frozen(suite)
    resumed = thaw(frozen)
    if frozen:
        timeline.add("failback", "region_resumed", region=OLD, processes=len(resumed), recorded=len(frozen))
    roles = {OLD: suite.primary.role(), NEW: suite.replica.role()}
    if roles[NEW] != "primary":
        raise RuntimeError(f"region-b's global cluster is not the primary ({roles}): nothing to fail back")
    rejoined = await asyncio.to_thread(global_switch.rebuild_as_replica, suite.primary, suite.replica, OLD)
    timeline.add("failback", "old_primary_rejoined", region=OLD, method=rejoined.method, why=rejoined.reason,
                 seconds=rejoined.seconds)
    switch_started = timeline.now()
    await asyncio.to_thread(global_switch.stop, suite.replica, "fast")
    timeline.add("failback", "switchover_region_b_stopped", detail="fast shutdown: all WAL sent to region-a first")
    await asyncio.to_thread(global_switch.promote, suite.primary)
    await asyncio.to_thread(global_switch.reset_recovery_settings, suite.primary)
    timeline.add("failback", "switchover_promoted", region=OLD)
    back = await asyncio.to_thread(global_switch.rebuild_as_replica, suite.replica, suite.primary, NEW)
    timeline.add("failback", "replica_rebuilt", region=NEW, method=back.method, why=back.reason,
                 seconds=back.seconds)
    switch_seconds = round(timeline.now() - switch_started, 3)
    seq = -int(time.time() * 1000)
    error = await try_write(suite.primary.writer_dsn(), seq, OLD)
    visible = error is None and await _read_seq(suite.replica.writer_dsn(), seq)
    report.check("after failback a write on region-a's primary is read at once on region-b's replica",
                 bool(visible), write_error=error)
    roles = {OLD: suite.primary.role(), NEW: suite.replica.role()}
    report.check("region-a is the primary and region-b its synchronous replica again",
                 roles == {OLD: "primary", NEW: "replica"}
                 and suite.primary.sql("SELECT sync_state FROM pg_stat_replication WHERE application_name = "
                                       "'region_b'") == "sync", roles=roles)
    if frozen:
        report.check(f"{OLD}'s processes resumed", len(resumed) == len(frozen), resumed=len(resumed),
                     recorded=len(frozen))
    document: dict[str, Any] = {
        "kind": "suite-failback", "resumed_processes": len(resumed),
        "region_a_rejoined": {"method": rejoined.method, "why": rejoined.reason, "seconds": rejoined.seconds},
        "switchover": {"seconds_without_primary_and_rebuild": switch_seconds,
                       "region_b_rebuilt": {"method": back.method, "why": back.reason, "seconds": back.seconds}},
        "global_roles": roles,
    }
    report.document = document
    state_file(suite).unlink(missing_ok=True)
    return report
