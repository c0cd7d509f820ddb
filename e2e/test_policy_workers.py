"""IG_POLICY_WORKERS=2: two worker processes answer on the one gRPC port (connections spread by SO_REUSEPORT),
each visible in the service's /metrics; a worker SIGKILLed with its writer in a burst stops the whole service
(fail closed), and the service restarted on the same WAL directory has every answered decision of both workers in
the decision log, once."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import grpc
import pytest
from ig.policy.v1 import policy_pb2_grpc
from ig_common.grpc_client import channel_as
from ig_policy.testing import (
    GOLDEN_NOW,
    OpaServer,
    child_pids,
    golden_cases,
    logged_decision_ids,
    opa_server,
    policy_service,
    proto_from_input,
    set_test_clock,
)

pytestmark = pytest.mark.e2e

# Connections: the kernel picks a worker per connection (a hash of its addresses), so with 16 the chance that one
# worker gets none is 2 / 2^16.
CONNECTIONS = 16
BURST = 1200
KILL_AFTER = 400


@pytest.fixture(scope="module")
def opa() -> Iterator[OpaServer]:
    with opa_server() as server:
        yield server


def scrape(http_url: str) -> str:
    with urllib.request.urlopen(f"{http_url}/metrics", timeout=10) as answer:
        return str(answer.read().decode())


def per_worker(metrics: str, name: str, **labels: str) -> dict[str, float]:
    """Sum of ``name``'s samples with ``labels``, by their worker label."""
    found: dict[str, float] = {}
    for line in metrics.splitlines():
        match = re.match(rf'^{name}\{{(.*)\}} (\S+)$', line)
        if not match:
            continue
        pairs = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        if all(pairs.get(key) == value for key, value in labels.items()):
            found[pairs["worker"]] = found.get(pairs["worker"], 0.0) + float(match.group(2))
    return found


def stubs(stack: ExitStack, address: str) -> list[policy_pb2_grpc.PolicyServiceStub]:
    # A channel option of its own per channel: grpc would otherwise share one connection among equal channels.
    return [policy_pb2_grpc.PolicyServiceStub(stack.enter_context(
        channel_as("gateway", address, options=[("grpc.use_local_subchannel_pool", 1), ("ig.test.channel", n)])))
        for n in range(CONNECTIONS)]


def allowed_request() -> Any:
    allowed = next(c for c in golden_cases() if c.name == "same tenant and purpose may read")
    return proto_from_input(allowed.input)


def test_two_workers_answer_on_one_port_and_each_shows_in_the_metrics(
        infra: Any, database_url: str, opa: OpaServer, tmp_path: Path) -> None:
    env = {**infra.env(database_url, "policy"), **opa.env()}
    set_test_clock(tmp_path / "clock", GOLDEN_NOW)
    request = allowed_request()
    with policy_service(env, tmp_path / "service.log", policy_workers="2", opa_timeout_ms="5000",
                        test_clock_file=str(tmp_path / "clock")) as service, ExitStack() as stack:
        for stub in stubs(stack, service.grpc_address) * 4:
            assert stub.Decide(request, timeout=30).result
        metrics = scrape(service.http_url)
        pids = {worker: int(pid) for worker, pid in per_worker(metrics, "ig_policy_worker_pid").items()}
        assert sorted(pids) == ["0", "1"] and len(set(pids.values())) == 2
        assert set(pids.values()) <= set(child_pids(service.process.pid)), "the workers are the service's processes"
        handled = per_worker(metrics, "ig_grpc_server_handled_total",
                             method="/ig.policy.v1.PolicyService/Decide", code="OK")
        assert sorted(handled) == ["0", "1"] and all(count > 0 for count in handled.values()), handled
        assert sum(handled.values()) == CONNECTIONS * 4
        # Each worker has a WAL directory and a writer of its own.
        assert sorted(p.name for p in (tmp_path / "service.wal").iterdir() if p.is_dir()) == ["worker-0", "worker-1"]
        assert all(len(child_pids(pid)) == 1 for pid in pids.values())
        assert service.stop() == 0


def burst(stubs: list[policy_pb2_grpc.PolicyServiceStub], victim: int, http_url: str
          ) -> tuple[list[str], dict[str, float]]:
    """BURST decisions over every connection, 32 at a time; SIGKILL worker ``victim`` and its writer once
    KILL_AFTER are answered. The ids of the decisions answered, and each worker's Decide count just before the
    kill."""
    request = allowed_request()
    answered: list[str] = []
    handled: dict[str, float] = {}

    def one(n: int) -> str | None:
        try:
            return str(stubs[n % len(stubs)].Decide(request, timeout=30).decision_id)
        except grpc.RpcError:
            return None

    with ThreadPoolExecutor(32) as pool:
        for decision_id in pool.map(one, range(BURST)):
            if decision_id is not None:
                answered.append(decision_id)
            if len(answered) >= KILL_AFTER and not handled:
                handled = per_worker(scrape(http_url), "ig_grpc_server_handled_total",
                                     method="/ig.policy.v1.PolicyService/Decide", code="OK")
                writers = child_pids(victim)
                os.kill(victim, signal.SIGKILL)
                for writer in writers:
                    os.kill(writer, signal.SIGKILL)
    assert handled, "the kill must happen in the burst"
    return answered, handled


def test_a_worker_killed_in_a_burst_stops_the_service_and_the_restart_loses_no_answered_decision(
        infra: Any, database_url: str, opa: OpaServer, tmp_path: Path) -> None:
    env = {**infra.env(database_url, "policy"), **opa.env()}
    set_test_clock(tmp_path / "clock", GOLDEN_NOW)
    settings = {"policy_workers": "2", "opa_timeout_ms": "5000", "test_clock_file": str(tmp_path / "clock"),
                "decision_log_wal_dir": str(tmp_path / "wal")}
    with policy_service(env, tmp_path / "first.log", **settings) as first, ExitStack() as stack:
        connections = stubs(stack, first.grpc_address)
        pids = {worker: int(pid) for worker, pid in per_worker(scrape(first.http_url), "ig_policy_worker_pid").items()}
        answered, handled = burst(connections, pids["1"], first.http_url)
        status = first.process.wait(timeout=90)
    assert sorted(handled) == ["0", "1"] and all(count > 0 for count in handled.values()), \
        f"both workers must have answered in the burst: {handled}"
    assert status != 0, "a dead worker must stop the service (fail closed), not leave it half up"
    assert "policy_worker_exited" in (tmp_path / "first.log").read_text(errors="replace")
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids.values()), "every worker stops with the service"
    assert KILL_AFTER <= len(answered) < BURST
    with policy_service(env, tmp_path / "second.log", **settings) as second:
        found = asyncio.run(logged_decision_ids(infra.service_dsn("policy", database_url), answered, within_s=90))
        assert second.stop() == 0
    missing = set(answered) - set(found)
    assert not missing, f"{len(missing)} answered decisions are not in the log, e.g. {sorted(missing)[:3]}"
    assert len(found) == len(set(found)) == len(answered)
    assert "decision_log_wal_replayed" in (tmp_path / "second.log").read_text(errors="replace"), \
        "the burst must leave decisions in the WAL that only the restarted workers' writers take"


def test_workers_do_not_outlive_a_killed_supervisor(
        infra: Any, database_url: str, opa: OpaServer, tmp_path: Path) -> None:
    """A SIGKILLed supervisor cannot stop its workers itself: the kernel tells them (PR_SET_PDEATHSIG), so none is
    left serving the port with nobody watching it."""
    env = {**infra.env(database_url, "policy"), **opa.env()}
    with policy_service(env, tmp_path / "service.log", policy_workers="2") as service:
        workers = child_pids(service.process.pid)
        assert len(workers) == 2
        os.kill(service.process.pid, signal.SIGKILL)
        service.process.wait(timeout=10)
        deadline = time.monotonic() + 60
        while any(Path(f"/proc/{pid}").exists() for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(Path(f"/proc/{pid}").exists() for pid in workers), "a worker outlived its supervisor"
