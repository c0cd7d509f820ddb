"""The decision log survives a crash of the whole policy service: the service process and its writer are
SIGKILLed in the middle of a 1,000-decision burst, a new service starts on the same WAL directory, and every
decision a client received an answer for is in policy.decision_log, once."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
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

BURST = 1000
KILL_AFTER = 300
IN_FLIGHT = 32


@pytest.fixture(scope="module")
def opa() -> Iterator[OpaServer]:
    with opa_server() as server:
        yield server


def burst(stub: policy_pb2_grpc.PolicyServiceStub, service_pid: int) -> list[str]:
    """Ask BURST decisions, IN_FLIGHT at a time; SIGKILL the service and its writer once KILL_AFTER are answered.
    The ids of the decisions answered (the rest fail: the service is gone)."""
    allowed = next(c for c in golden_cases() if c.name == "same tenant and purpose may read")
    request = proto_from_input(allowed.input)
    answered: list[str] = []
    pending: list[grpc.Future] = []
    killed = False
    for n in range(BURST):
        pending.append(stub.Decide.future(request, timeout=30))
        while len(pending) >= IN_FLIGHT or (n == BURST - 1 and pending):
            done = pending.pop(0)
            try:
                answered.append(done.result().decision_id)
            except grpc.RpcError as error:
                assert killed, f"a decision failed before the kill: {error}"
            if len(answered) >= KILL_AFTER and not killed:
                writers = child_pids(service_pid)
                os.kill(service_pid, signal.SIGKILL)
                for writer in writers:
                    os.kill(writer, signal.SIGKILL)
                killed = True
    assert killed
    return answered


def test_a_service_killed_in_a_burst_and_restarted_on_its_wal_loses_no_answered_decision(
        infra: Any, database_url: str, opa: OpaServer, tmp_path: Path) -> None:
    env = {**infra.env(database_url, "policy"), **opa.env()}
    set_test_clock(tmp_path / "clock", GOLDEN_NOW)
    settings = {"opa_timeout_ms": "5000", "test_clock_file": str(tmp_path / "clock"),
                "decision_log_wal_dir": str(tmp_path / "wal")}
    with policy_service(env, tmp_path / "first.log", **settings) as first, \
            channel_as("gateway", first.grpc_address) as channel:
        answered = burst(policy_pb2_grpc.PolicyServiceStub(channel), first.process.pid)
        first.process.wait(timeout=10)
    assert KILL_AFTER <= len(answered) < BURST
    with policy_service(env, tmp_path / "second.log", **settings) as second:
        found = asyncio.run(logged_decision_ids(infra.service_dsn("policy", database_url), answered, within_s=60))
        assert second.stop() == 0
    missing = set(answered) - set(found)
    assert not missing, f"{len(missing)} answered decisions are not in the log, e.g. {sorted(missing)[:3]}"
    assert len(found) == len(set(found)) == len(answered)
    assert "decision_log_wal_replayed" in (tmp_path / "second.log").read_text(errors="replace"), \
        "the burst must leave decisions in the WAL that only the restarted service's writer takes"


def test_a_second_service_on_the_same_wal_directory_stops_at_start_naming_the_setting(
        infra: Any, database_url: str, opa: OpaServer, tmp_path: Path) -> None:
    env = {**infra.env(database_url, "policy"), **opa.env()}
    settings = {"decision_log_wal_dir": str(tmp_path / "wal")}
    with policy_service(env, tmp_path / "first.log", **settings), \
            pytest.raises(RuntimeError, match=r"IG_DECISION_LOG_WAL_DIR \S+ is in use by another policy service"), \
            policy_service(env, tmp_path / "second.log", **settings):
        pass
