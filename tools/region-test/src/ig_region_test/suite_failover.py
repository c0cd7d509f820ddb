"""Failover and failback of the RUNNING two-region suite (`make up`): ``ig-infra failover`` / ``ig-infra failback``.

region-test's drill (``ig_region_test.scenario``) builds regions of its own; this one acts on the suite's. The
partition, on the suite's layout (ig_infra.suite_network):

* network namespaces (what `make up` builds): the inter-region link is set down. region-b can no longer reach
  region-a at all (checked: a connection from inside region-b's namespace to region-a's end of the link fails),
  and the replication stream stops. Both regions keep serving what is theirs through the host's bridge: region-a
  its pinned tenant, region-b, once promoted, the global tenants.
* loopback (FALLBACK, where namespaces cannot be made): there is no link to cut; region-a's own processes (its
  PostgreSQL, Kafka, OPA and five services) are frozen with SIGSTOP instead: they keep their sockets and answer
  nobody.

Either way what both regions share (Dex, Prometheus, the Pushgateway, the ledger's witnesses) is left running
(region-b's portal signs its users in at the shared Dex), and region-a's global primary is FENCED at the cut:
stopped at once and restarted in recovery with no upstream and no replication access
(ig_infra.global_switch.fence), so it answers reads and refuses every write.

A sequenced writer (``ig_region_test.workload.SequencedWriter``, ``synchronous_commit = remote_apply``) writes the
global cluster as ``ig_global_writer`` throughout and records only acknowledged writes; the controller promotes
region-b's replica and moves the writer there. RTO = the cut -> the first write region-b acknowledged; RPO = the
acknowledged writes of region-a that region-b lacks (``ig_region_test.measure``). Then region-b's policy service
and portal are asked for the global tenant (beta: served) and the pinned one (alpha: refused).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from ig_infra import global_switch
from ig_infra.components.global_pg import GlobalPostgres
from ig_infra.freeze import FrozenProcess, freeze
from ig_infra.netns import port_open_in
from ig_infra.suite_network import SuiteNetwork, set_inter_region_link

from ig_region_test.measure import measure_rpo, measure_rto
from ig_region_test.suite_takeover import PINNED_TENANT, Check, served_by
from ig_region_test.timeline import Timeline
from ig_region_test.workload import Router, SequencedWriter

OLD, NEW = "region-a", "region-b"
FALLBACK = ("FALLBACK: the suite's two regions share the loopback (no network namespaces), so there is no link to "
            "cut: the partition is region-a's processes frozen (SIGSTOP) and its global primary fenced "
            "(restarted in recovery: refuses writes) at the cut")
CUT = ("the inter-region link is set down (network namespaces): region-a and region-b cannot reach each other; "
       "region-a's global primary is fenced (restarted in recovery: refuses writes) at the cut")
RESIDENCY = (f"residency wins over availability: {PINNED_TENANT} is pinned to {OLD}, whose data lives only in "
             f"{OLD}'s own stores; while {OLD} is partitioned {PINNED_TENANT} is not served from {NEW} (its "
             f"policy denies, its portal refuses with 403). Availability for {PINNED_TENANT} needs a standby "
             f"inside {OLD} (docs/runbooks/region-failover.md)")


@dataclass(frozen=True)
class SuiteRegions:
    """The parts of a running two-region suite the failover acts on and asks."""

    primary: GlobalPostgres  # region-a's global cluster, built as the primary
    replica: GlobalPostgres  # region-b's, built as its synchronous replica
    partitioned: Callable[[], dict[str, int]]  # region-a's processes to freeze: name -> pid
    policy_b: str  # region-b's policy service, gRPC host:port
    portal_b: str  # region-b's portal, http://host:port
    evidence_b: str  # region-b's evidence service, gRPC host:port
    issuer: str  # the shared Dex
    signing_key_b: Path  # the release key region-b's evidence service pins
    state_dir: Path  # state between failover and failback, and the reports
    release: str = "v1.2.1"  # the global tenant's release region-b must serve
    network: SuiteNetwork | None = None  # the regions' namespaces; None: the loopback layout (FALLBACK)

    @property
    def partition(self) -> str:
        return CUT if self.network else FALLBACK


@dataclass(frozen=True)
class Limits:
    time_limit: float = 60.0  # give up on the RTO after this long
    max_rto: float = 10.0  # the goal
    warmup: float = 2.0
    write_interval: float = 0.02
    write_timeout: float = 2.0
    writes_after_failover: int = 20


@dataclass
class Report:
    document: dict[str, Any] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)

    def check(self, name: str, passed: bool, **detail: Any) -> None:
        self.checks.append(Check(name, passed, detail))

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)


def state_file(suite: SuiteRegions) -> Path:
    return suite.state_dir / "state.json"  # under the run dir: ig_infra.cli.FAILOVER_STATE


def save_state(suite: SuiteRegions, frozen: list[FrozenProcess], **extra: Any) -> None:
    suite.state_dir.mkdir(parents=True, exist_ok=True)
    state_file(suite).write_text(json.dumps({"frozen": [p.as_dict() for p in frozen], **extra}, indent=1))


def load_frozen(suite: SuiteRegions) -> list[FrozenProcess]:
    if not state_file(suite).exists():
        return []
    return [FrozenProcess(**p) for p in json.loads(state_file(suite).read_text())["frozen"]]


async def _next_seq(dsn: str) -> int:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        return int(await conn.fetchval("SELECT coalesce(max(seq), 0) + 1 FROM global.writes"))
    finally:
        await conn.close()


async def _present(dsn: str, region: str) -> list[int]:
    conn = await asyncpg.connect(dsn, timeout=5, command_timeout=10)
    try:
        return [r["seq"] for r in await conn.fetch("SELECT seq FROM global.writes WHERE region = $1", region)]
    finally:
        await conn.close()


async def try_write(dsn: str, seq: int, region: str) -> str | None:
    """One write as the global writer: None when it committed, else the error the server gave."""
    try:
        conn = await asyncpg.connect(dsn, timeout=3, command_timeout=3)
    except (OSError, TimeoutError, asyncpg.PostgresError) as error:
        return f"connect: {type(error).__name__}: {error}"
    try:
        await conn.execute("INSERT INTO global.writes (seq, region, tenant) VALUES ($1, $2, 'fence-check')",
                           seq, region)
        return None
    except (OSError, TimeoutError, asyncpg.PostgresError) as error:
        return f"{type(error).__name__}: {error}"
    finally:
        conn.terminate()


def check_pair(suite: SuiteRegions) -> None:
    roles = {OLD: suite.primary.role(), NEW: suite.replica.role()}
    if roles != {OLD: "primary", NEW: "replica"}:
        raise RuntimeError(f"the global pair is not region-a primary -> region-b replica ({roles}); "
                           "`ig-infra failback` first, or `make up` both regions")


def _precondition(suite: SuiteRegions) -> None:
    check_pair(suite)
    global_switch.ensure_writer(suite.primary)
    global_switch.refresh_access(suite.replica)


async def failover(suite: SuiteRegions, limits: Limits, timeline: Timeline, *, fence: bool = True) -> Report:
    """The failover, measured. ``fence=False`` leaves the old primary writable (only for showing that the fence
    check can fail)."""
    report = Report()
    await asyncio.to_thread(_precondition, suite)
    first_seq = await _next_seq(suite.primary.writer_dsn())
    router = Router(OLD, suite.primary.writer_dsn())
    writer = SequencedWriter(router, timeline, True, limits.write_interval, limits.write_timeout,
                             tenant="global-suite-failover", next_seq=first_seq)
    stop = asyncio.Event()
    writing = asyncio.create_task(writer.run(stop))
    frozen: list[FrozenProcess] = []
    fence_error: str | None = "not tried"
    reachable: bool | None = None
    try:
        await asyncio.sleep(limits.warmup)
        if not writer.acked_in(OLD):
            raise RuntimeError(f"the writer could not write to {OLD}'s global primary during the warm-up")
        cut_at = timeline.add("failover", "cut", detail=suite.partition)
        if suite.network:
            done = await asyncio.to_thread(set_inter_region_link, suite.network, False)
            timeline.add("failover", "link_cut", command=done)
        if fence:
            await asyncio.to_thread(global_switch.fence, suite.primary)
            timeline.add("failover", "old_primary_fenced", region=OLD, role=suite.primary.role())
        frozen = [] if suite.network else freeze(suite.partitioned())
        save_state(suite, frozen, cut_at_utc=time.time(), link_cut=suite.network is not None)
        if frozen:
            timeline.add("failover", "region_frozen", region=OLD, processes=len(frozen),
                         names=sorted({p.name for p in frozen}))
        reachable = _across_the_link(suite)
        fence_error = await try_write(suite.primary.writer_dsn(), -int(time.time() * 1000), OLD)
        timeline.add("failover", "fence_checked", refused=fence_error is not None, error=fence_error)
        await asyncio.to_thread(global_switch.promote, suite.replica)
        timeline.add("failover", "promoted", region=NEW)
        router.move(NEW, suite.replica.writer_dsn())
        timeline.add("failover", "writer_moved", to=NEW)
        deadline = cut_at + limits.time_limit
        while timeline.now() < deadline:
            if writing.done() or len(writer.acked_in(NEW)) >= limits.writes_after_failover:
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writing, timeout=limits.write_timeout + 5)
    rto = measure_rto(cut_at, writer.acks, NEW, limits.time_limit)
    rpo = measure_rpo(writer.acks, OLD, await _present(suite.replica.writer_dsn(), OLD))
    report.check("rpo: no acknowledged write lost (remote_apply)", rpo.lost_writes == 0,
                 lost_writes=rpo.lost_writes, lost_sequence_numbers=list(rpo.lost_sequence_numbers[:50]))
    report.check(f"rto <= {limits.max_rto:g} s", rto.seconds is not None and rto.seconds <= limits.max_rto,
                 seconds=rto.seconds)
    # Refused by the server as a write (it answers, in recovery), not merely unreachable.
    fenced = fence_error is not None and "read-only transaction" in fence_error
    report.check("the fenced old primary refuses writes during the partition", fenced, error=fence_error)
    if suite.network:
        report.check("region-b cannot reach region-a across the cut link", reachable is False,
                     reached=reachable, address=f"{suite.network.a.peer_address}:{suite.primary.port}")
    served = await asyncio.to_thread(served_by, NEW, policy=suite.policy_b, portal=suite.portal_b,
                                     issuer=suite.issuer, version=suite.release, pinned_home=OLD)
    report.checks.extend(served)
    timeline.add("failover", "takeover_checked", region=NEW, passed=[c.name for c in served if c.passed],
                 failed=[c.name for c in served if not c.passed])
    report.document = {
        "kind": "suite-failover", "layout": "netns" if suite.network else "loopback", "partition_kind": suite.partition,
        **({} if suite.network else {"fallback": FALLBACK}), "old_primary": OLD, "new_primary": NEW,
        "rto_seconds": rto.seconds, "rto_goal_seconds": limits.max_rto, "time_limit_seconds": limits.time_limit,
        "rpo_lost_writes": rpo.lost_writes, "rpo_lost_seconds": rpo.lost_seconds,
        "acknowledged_writes": len(writer.acks), "acknowledged_before_cut": rpo.acknowledged_before_failure,
        "acknowledged_by_new_primary": len(writer.acked_in(NEW)), "failed_or_ambiguous_writes": len(writer.failed),
        "fence": {"applied": fence, "write_refused": fenced, "error": fence_error},
        "partition": {"link": None if suite.network is None else f"{suite.network.a.peer_if}/{suite.network.b.peer_if}",
                      "frozen": len(frozen), "processes": sorted({p.name for p in frozen}),
                      "left_running": "what both regions share: Dex, Prometheus, the Pushgateway, the witnesses"},
        "tenants": {c.name: c.as_dict() for c in served}, "residency": RESIDENCY,
        "global_roles": {OLD: suite.primary.role(), NEW: suite.replica.role()},
    }
    return report


def _across_the_link(suite: SuiteRegions) -> bool | None:
    """Whether region-b's namespace still reaches region-a's global cluster over the link (None: no link)."""
    if suite.network is None:
        return None
    return port_open_in(suite.network.b.netns, suite.network.a.peer_address, suite.primary.port, timeout=1.0)


def finish(report: Report, timeline: Timeline, out: Path) -> dict[str, Any]:
    document = {**report.document, "passed": report.passed, "checks": [c.as_dict() for c in report.checks],
                "timeline": timeline.events}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=2, default=str))
    return document
