"""`make up`'s two regions as `make up` starts them (issue #23, item 1): `ig-infra up --regions a,b` and `ig-infra
services up --regions a,b`, each region in its own network namespace, then `ig-infra failover` cutting the link,
`ig-infra failback` and `ig-infra down`, all through the CLI a user runs.

A private run dir, and the ports of the shared infrastructure moved (IG_PG_PORT, ...) so that the host's side of
the port bridge collides with nothing the other tests use; the services keep their documented ports (no other
test listens there while this module runs). Anything that cannot start fails the test; nothing is skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ig_infra.components.kafka import Kafka
from ig_infra.components.opa import Opa
from ig_infra.components.postgres import Postgres
from ig_infra.netns import port_open_in
from ig_infra.paths import Paths
from ig_infra.process import free_port, read_pid
from ig_infra.regions import SecondRegion
from ig_infra.services import PROCESSES, SERVICES, ServiceProcess
from ig_infra.suite_network import inter_region_link_up, load, pids_inside

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent
MOVED = ("IG_PG_PORT", "IG_GLOBAL_PG_PORT", "IG_KAFKA_PORT", "IG_KAFKA_CONTROLLER_PORT", "IG_OPA_PORT", "IG_DEX_PORT",
         "IG_DEX_LDAP_PORT", "IG_DEX_TELEMETRY_PORT", "IG_PROMETHEUS_PORT", "IG_PUSHGATEWAY_PORT")


def _ig_infra(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "ig-infra"), *args], env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)


@pytest.fixture(scope="module")
def suite(infra: Any) -> Iterator[dict[str, Any]]:
    # Not under pytest's tmp_path: PostgreSQL runs as `postgres`, which cannot traverse root's 0700 /tmp/pytest-of-*.
    run = Path(f"/var/tmp/ig-netns-suite-test-{free_port()}")
    run.mkdir(mode=0o755)
    env = {**os.environ, "IG_RUN_DIR": str(run), "IG_CACHE_DIR": str(infra.paths.cache), "IG_NETWORK": "netns",
           "ARTIFACTS": str(run / "artifacts")}
    env.update({variable: str(free_port()) for variable in MOVED})
    env.pop("IG_REGIONS", None)
    try:
        up = _ig_infra(env, "up", "--regions", "a,b")
        assert up.returncode == 0, up.stdout[-4000:] + up.stderr[-4000:]
        services = _ig_infra(env, "services", "up", "--regions", "a,b")
        assert services.returncode == 0, services.stdout[-4000:] + services.stderr[-4000:]
        yield {"env": env, "run": run, "paths": Paths(cache=infra.paths.cache, run=run)}
    finally:
        down = _ig_infra(env, "down")
        print(down.stdout[-2000:], down.stderr[-2000:])
        shutil.rmtree(run, ignore_errors=True)


@pytest.fixture(scope="module")
def regional_pids(suite: dict[str, Any]) -> dict[str, dict[str, int]]:
    paths = suite["paths"]
    found: dict[str, dict[str, int]] = {"region-a": {}, "region-b": {}}
    # Components read their ports from the environment when they are made: made here with the suite's.
    with pytest.MonkeyPatch.context() as patch:
        for variable in MOVED:
            patch.setenv(variable, suite["env"][variable])
        second = SecondRegion.of(paths)
        for region, region_paths, specs in (("region-a", paths, SERVICES),
                                            ("region-b", second.paths, second.specs())):
            postmaster = Postgres(region_paths).data / "postmaster.pid"
            found[region]["postgres"] = int(postmaster.read_text().split()[0])
            for component in (Kafka(region_paths), Opa(region_paths)):
                pid = read_pid(component.pid_file)
                assert pid is not None, (region, component.name)
                found[region][component.name] = pid
            for spec in specs:
                pid = read_pid(ServiceProcess(spec, region_paths).pid_file)
                assert pid is not None, (region, spec.name)
                found[region][spec.name] = pid
    return found


def test_every_regional_process_runs_inside_its_region_namespace(suite: dict[str, Any],
                                                                 regional_pids: dict[str, dict[str, int]]) -> None:
    network = load(suite["run"])
    assert network is not None
    for region, pids in regional_pids.items():
        inside = set(pids_inside(network.region(region).netns))
        assert set(pids.values()) <= inside, {name: pid for name, pid in pids.items() if pid not in inside}
        assert len(pids) == 3 + len(SERVICES), pids
    # what both regions share runs on the host, in neither namespace
    witness = read_pid(ServiceProcess(PROCESSES[0], suite["paths"]).pid_file)
    assert witness is not None and all(witness not in pids_inside(r.netns) for r in network.regions)


def test_the_documented_ports_reach_each_region_through_the_bridge(suite: dict[str, Any]) -> None:
    for health_port in (8081, 8281, 8085, 8285):  # policy and portal of region-a, then of region-b
        with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/healthz", timeout=5) as response:
            assert json.loads(response.read())["status"] == "ok", health_port
    status = _ig_infra(suite["env"], "status", timeout=120)
    assert status.returncode == 0, status.stdout[-3000:]
    assert "inter-region link up" in status.stdout and "port-bridge      up" in status.stdout, status.stdout[:600]


def test_a_region_cannot_reach_the_other_regions_services(suite: dict[str, Any]) -> None:
    network = load(suite["run"])
    assert network is not None
    # region-a's policy service listens inside region-a only: not in region-b, not on the link's address
    assert port_open_in(network.a.netns, "127.0.0.1", 50051)
    assert not port_open_in(network.b.netns, "127.0.0.1", 50051)
    assert not port_open_in(network.b.netns, network.a.peer_address, 50051)


@pytest.fixture(scope="module")
def failed_over(suite: dict[str, Any]) -> dict[str, Any]:
    out = suite["run"] / "failover.json"
    done = _ig_infra(suite["env"], "failover", "--max-rto", "60", "--out", str(out), timeout=300)
    status = _ig_infra(suite["env"], "status", timeout=120)
    report = json.loads(out.read_text()) if out.exists() else {}
    back_out = suite["run"] / "failback.json"
    back = _ig_infra(suite["env"], "failback", "--out", str(back_out), timeout=300)
    status_after = _ig_infra(suite["env"], "status", timeout=120)
    return {"done": done, "report": report, "status": status.stdout, "back": back,
            "back_report": json.loads(back_out.read_text()) if back_out.exists() else {},
            "status_after": status_after.stdout, "network": load(suite["run"])}


def test_failover_cuts_the_inter_region_link_and_region_b_takes_over(failed_over: dict[str, Any]) -> None:
    done, report = failed_over["done"], failed_over["report"]
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-3000:]
    assert report["layout"] == "netns" and "fallback" not in report, report.get("layout")
    checks = {check["name"]: check["passed"] for check in report["checks"]}
    assert checks.pop("region-b cannot reach region-a across the cut link") is True
    assert all(checks.values()), checks
    assert report["rpo_lost_writes"] == 0 and report["rto_seconds"] is not None
    assert "inter-region link DOWN (partitioned)" in failed_over["status"], failed_over["status"][:600]


def test_failback_restores_the_link_and_the_pair(failed_over: dict[str, Any]) -> None:
    back = failed_over["back"]
    assert back.returncode == 0, back.stdout[-4000:] + back.stderr[-3000:]
    assert failed_over["back_report"]["global_roles"] == {"region-a": "primary", "region-b": "replica"}
    assert failed_over["network"] is not None and inter_region_link_up(failed_over["network"])
    assert "inter-region link up" in failed_over["status_after"]


def test_down_stops_everything_and_removes_the_namespaces(suite: dict[str, Any], failed_over: dict[str, Any]) -> None:
    network = failed_over["network"]
    done = _ig_infra(suite["env"], "down", timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout.split()
    assert network.a.netns not in listed and network.b.netns not in listed
    assert load(suite["run"]) is None
    for port in (8081, 8281, 50051):  # the bridge is gone with them
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
