"""Failure behaviour with the real Prometheus: a pinned flag is respected (and said so), Prometheus down keeps the
last state marked stale and flips nothing, and a restart of the burn service recovers its state from PostgreSQL
without a second incident or event.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from google.protobuf import struct_pb2
from ig.flags.v1 import flags_pb2, flags_pb2_grpc
from ig_burn.devtools.harness import (
    BurnProcess,
    free_port,
    prometheus_config,
    synthetic_slo_yaml,
    throttle_policy_yaml,
    wait_for,
)
from ig_burn.devtools.synthetic_exporter import Workload, serve
from ig_common.grpc_client import channel_as
from ig_infra.components.prometheus import PrivatePrometheus

pytestmark = pytest.mark.e2e


@pytest.fixture
def world(infra: Any, database_url: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    slo = f"res-{uuid.uuid4().hex[:8]}"
    workload = Workload(series=1, rps=200.0, error_ratio=0.0)
    exporter = serve(workload, "127.0.0.1", free_port())
    prometheus = PrivatePrometheus(infra.paths.cache, tmp_path / "prometheus", prometheus_config(
        {"synthetic": f"127.0.0.1:{exporter.server_address[1]}"}), free_port()).start()
    config = tmp_path / "slos"
    config.mkdir()
    (config / "sim.yaml").write_text(synthetic_slo_yaml(slo) + "---\n" + throttle_policy_yaml(slo, min_dwell="2s"))
    env = {**infra.env(database_url, "burn"), "IG_SLO_DIR": str(config), "IG_PROMETHEUS_URL": prometheus.url,
           "IG_EVALUATION_INTERVAL_SECONDS": "1", "IG_WINDOW_SCALE": "86400", "IG_MIN_WINDOW_SECONDS": "3",
           "IG_PROMETHEUS_TIMEOUT_SECONDS": "2"}
    burn = BurnProcess(env, tmp_path / "burn.log").start()
    state = {"slo": slo, "workload": workload, "prometheus": prometheus, "burn": burn, "env": env, "tmp": tmp_path}
    try:
        yield state
    finally:
        state["burn"].stop()
        prometheus.remove()
        exporter.shutdown()


def slo_burn(burn: BurnProcess, slo: str) -> dict[str, Any]:
    [item] = [s for s in burn.get_json("/get-burn")["slos"] if s["slo"] == slo]
    return item  # type: ignore[no-any-return]


def flag_value(burn: BurnProcess, key: str) -> Any:
    with channel_as("operator", burn.grpc_target) as channel:
        reply = flags_pb2_grpc.FlagServiceStub(channel).GetFlag(flags_pb2.GetFlagRequest(key=key), timeout=5)
    kind = reply.flag.value.WhichOneof("kind")
    return getattr(reply.flag.value, kind)


async def counts(database_url: str, slo: str) -> dict[str, int]:
    conn = await asyncpg.connect(database_url)
    try:
        return {
            "incidents": await conn.fetchval("SELECT count(*) FROM burn.incidents WHERE slo = $1", slo),
            "open": await conn.fetchval("SELECT count(*) FROM burn.incidents WHERE slo = $1 AND status = 'open'", slo),
            "transitions": await conn.fetchval("SELECT count(*) FROM burn.transitions WHERE slo = $1", slo),
            "burn_events": await conn.fetchval(
                "SELECT count(*) FROM burn.outbox WHERE topic = 'ig.burn.v1' AND ce_subject = $1", slo),
            "incident_events": await conn.fetchval(
                "SELECT count(*) FROM burn.outbox WHERE topic = 'ig.incidents.v1' AND message_key = $1",
                slo.encode()),
        }
    finally:
        await conn.close()


async def test_pin_stale_and_restart(world: dict[str, Any], database_url: str) -> None:
    slo, burn, workload = world["slo"], world["burn"], world["workload"]
    # A human pins experiments.paused=false: automation must leave it alone and say so.
    pinned = struct_pb2.Value(bool_value=False)
    with channel_as("operator", burn.grpc_target) as channel:
        flags_pb2_grpc.FlagServiceStub(channel).SetFlag(flags_pb2.SetFlagRequest(
            key="experiments.paused", value=pinned, pinned=True,
            reason="experiment must finish for the quarterly review"), timeout=5)
    await asyncio.to_thread(wait_for, lambda: not slo_burn(burn, slo)["stale"], timeout=60, what="first data")

    workload.set_ratio(0.05, None)
    await asyncio.to_thread(wait_for, lambda: slo_burn(burn, slo)["throttleState"] == "throttled", timeout=60,
                            what="throttle")
    assert flag_value(burn, "subs.optimizedBuffer") is False
    assert flag_value(burn, "experiments.paused") is False  # pinned
    conn = await asyncpg.connect(database_url)
    try:
        skipped = json.loads(await conn.fetchval("SELECT skipped FROM burn.transitions WHERE slo = $1", slo))
        summary = await conn.fetchval("SELECT summary FROM burn.incidents WHERE slo = $1", slo)
    finally:
        await conn.close()
    assert skipped == [{"flag": "experiments.paused", "wanted": True,
                        "reason": "pinned by spiffe://maestro.local/ns/ig/sa/operator: experiment must finish "
                                  "for the quarterly review"}]
    assert "left pinned: experiments.paused" in summary
    after_throttle = await counts(database_url, slo)
    assert after_throttle == {"incidents": 1, "open": 1, "transitions": 1, "burn_events": 1, "incident_events": 1}

    # Prometheus goes away and the errors stop: measured, this would release; unmeasured, nothing may move.
    world["prometheus"].stop()
    workload.set_ratio(0.0, None)
    await asyncio.to_thread(wait_for, lambda: slo_burn(burn, slo)["stale"], timeout=20, what="stale")
    await asyncio.sleep(5)
    report = burn.get_json("/get-burn")
    assert report["stale"] is True and "Prometheus" in report["error"]
    assert slo_burn(burn, slo)["throttleState"] == "throttled"
    assert flag_value(burn, "subs.optimizedBuffer") is False
    metrics = (await asyncio.to_thread(_get_text, f"{burn.health_url}/metrics"))
    assert f'ig_burn_stale{{service="synthetic",slo="{slo}"}} 1.0' in metrics

    # Restart the burn service while still throttled and Prometheus still down: state comes back from PostgreSQL.
    assert burn.stop() == 0
    world["burn"] = burn = BurnProcess(world["env"], world["tmp"] / "burn2.log").start()
    await asyncio.to_thread(wait_for, lambda: burn.get_json("/get-burn")["evaluatedAt"], timeout=20,
                            what="first tick after restart")
    assert slo_burn(burn, slo)["throttleState"] == "throttled"
    assert await counts(database_url, slo) == after_throttle

    # Prometheus returns (same TSDB); errors have aged out of the scaled month: exactly one release.
    world["prometheus"].start()
    await asyncio.to_thread(wait_for, lambda: slo_burn(burn, slo)["throttleState"] == "ok", timeout=90,
                            what="release after Prometheus returns")
    assert flag_value(burn, "subs.optimizedBuffer") is True
    assert flag_value(burn, "experiments.paused") is False
    await asyncio.sleep(3)
    assert await counts(database_url, slo) == {"incidents": 1, "open": 0, "transitions": 2, "burn_events": 2,
                                               "incident_events": 2}


def _get_text(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()
