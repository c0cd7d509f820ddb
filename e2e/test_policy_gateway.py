"""A gateway-like client end to end: HTTP into tools/gateway, gRPC to the Policy Reasoner, headers out."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from ig_policy.testing import REPO, RunningService, free_port, opa_server, policy_service, set_test_clock

pytestmark = pytest.mark.e2e

MONDAY = "2026-01-05T10:00:00Z"
ALICE = {"X-User": "u-alice", "X-Roles": "analyst", "X-Purposes": "investigation", "X-Purpose": "investigation",
         "X-Network-Zone": "corp", "X-Device-Trust": "high", "X-Session-Risk": "10", "X-Auth-Level": "pwd",
         "X-Request-Time": MONDAY}


@pytest.fixture(scope="module")
def service(infra: Any, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    scratch = tmp_path_factory.mktemp("gw")
    # The service judges at its own clock; here a test clock on Monday morning, the time the client also sends.
    set_test_clock(scratch / "clock", MONDAY)
    with opa_server() as opa:
        env = {**infra.env(database_url, "policy"), **opa.env()}
        with policy_service(env, scratch / "policy.log", opa_timeout_ms="5000",
                            test_clock_file=str(scratch / "clock")) as running:
            yield running


@pytest.fixture(scope="module")
def gateway(service: RunningService, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = (tmp_path_factory.mktemp("gw") / "gateway.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, str(REPO / "tools" / "gateway" / "policy_gateway.py"), "--listen", f"127.0.0.1:{port}",
         "--policy", service.grpc_address], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/docs", timeout=1)
            break
        except httpx.TransportError:
            assert process.poll() is None, "the gateway exited"
            time.sleep(0.2)
    yield url
    process.terminate()
    process.wait(timeout=10)
    log.close()


def test_allowed_request_is_forwarded_with_the_decision_headers(gateway: str) -> None:
    reply = httpx.get(f"{gateway}/alpha/case/case-1", headers=ALICE, timeout=30)
    assert reply.status_code == 200 and reply.json() == {"tenant": "alpha", "type": "case", "id": "case-1"}
    assert reply.headers["X-IG-Decision-Id"].startswith("dec_")
    assert reply.headers["X-IG-Rule-Id"] == "ig.purpose.allow_read"


async def test_denied_request_gets_403_with_a_masked_explanation_and_a_logged_id(
    gateway: str, database_url: str
) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        reply = await client.get(f"{gateway}/alpha/case/case-1", headers={**ALICE, "X-User-Tenant": "beta"})
    assert reply.status_code == 403
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.headers["X-IG-Rule-Id"] == "ig.tenant.mismatch"
    detail = reply.json()["detail"]
    assert "cross-tenant access is never allowed" in detail
    assert "alpha" not in detail and "beta" not in detail and "u-alice" not in str(reply.headers)
    decision_id = reply.headers["X-IG-Decision-Id"]
    conn = await asyncpg.connect(database_url)
    try:
        for _ in range(100):
            record = await conn.fetchval("SELECT record FROM policy.decision_log WHERE decision_id = $1", decision_id)
            if record:
                break
            await asyncio.sleep(0.1)
    finally:
        await conn.close()
    assert record is not None and "'beta'" in record, "the log keeps the full explanation under the same id"


def test_step_up_is_a_401_challenge(gateway: str) -> None:
    reply = httpx.post(f"{gateway}/alpha/case/case-1?action=export", timeout=30,
                       headers={**ALICE, "X-Device-Trust": "low"})
    assert reply.status_code == 401
    assert reply.headers["WWW-Authenticate"] == 'Bearer error="insufficient_user_authentication", acr_values="mfa"'
    assert reply.headers["X-IG-Rule-Id"] == "ig.device.step_up_low_trust"


def test_invalid_context_is_a_400_naming_the_field(gateway: str) -> None:
    reply = httpx.get(f"{gateway}/alpha/case/case-1", headers={**ALICE, "X-Session-Risk": "150"}, timeout=30)
    assert reply.status_code == 400 and "context.session_risk" in reply.json()["detail"]


def test_a_request_dated_ten_years_ahead_is_refused(gateway: str) -> None:
    reply = httpx.get(f"{gateway}/alpha/case/case-1", headers={**ALICE, "X-Request-Time": "2036-01-05T10:00:00Z"},
                      timeout=30)
    assert reply.status_code == 400 and "context.time: is 3652 d ahead" in reply.json()["detail"]


def test_a_forged_weekday_time_on_saturday_night_is_refused(gateway: str, service: RunningService) -> None:
    clock = service.log_path.with_name("clock")
    set_test_clock(clock, "2026-01-10T23:00:00+01:00")
    try:
        forged = httpx.get(f"{gateway}/alpha/case/case-1", headers=ALICE, timeout=30)  # claims Monday 10:00
        honest = httpx.get(f"{gateway}/alpha/case/case-1", timeout=30,
                           headers={**ALICE, "X-Request-Time": "2026-01-10T22:01:00Z"})
    finally:
        set_test_clock(clock, MONDAY)
    assert forged.status_code == 400 and "context.time: " in forged.json()["detail"]
    assert honest.status_code == 403 and honest.headers["X-IG-Rule-Id"] == "ig.time.outside_window"


def test_unreachable_policy_service_fails_closed(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(REPO / "tools" / "gateway" / "policy_gateway.py"), "--listen", f"127.0.0.1:{port}",
         "--policy", f"127.0.0.1:{free_port()}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                reply = httpx.get(f"http://127.0.0.1:{port}/alpha/case/case-1", headers=ALICE, timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert reply.status_code == 503
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_a_break_glass_grant_of_the_demo_approver_opens_an_export_through_the_gateway(gateway: str, infra: Any
                                                                                       ) -> None:
    """The approver `make up` creates (ig_infra.breakglass_key, the service's IG_BREAKGLASS_APPROVERS_PATH) signs;
    the gateway forwards the grant (X-IG-Break-Glass); the service verifies it at its clock."""
    from datetime import datetime, timedelta

    from ig_infra.breakglass_key import APPROVER
    from ig_policy.breakglass import issue_grant, load_private_key

    key = load_private_key(Path(infra.identities.env()["IG_BREAKGLASS_APPROVER_KEY"]))
    grant = issue_grant(key, approver=APPROVER, subject="u-alice", tenant="alpha",
                        scope={"resource_type": "case", "resource_id": "case-1", "action": "export",
                               "classification": "internal"},
                        justification="P1 incident INC-4712 export for regulator", ttl=timedelta(minutes=15),
                        now=datetime.fromisoformat(MONDAY.replace("Z", "+00:00")) - timedelta(minutes=1))
    on_call = {**ALICE, "X-Roles": "oncall", "X-Auth-Level": "mfa"}
    without = httpx.get(f"{gateway}/alpha/case/case-1?action=export", headers=on_call, timeout=30)
    assert without.status_code == 403 and without.headers["X-IG-Rule-Id"] == "ig.rbac.action_not_granted"
    opened = httpx.get(f"{gateway}/alpha/case/case-1?action=export", headers={**on_call, "X-IG-Break-Glass": grant},
                       timeout=30)
    assert opened.status_code == 200 and opened.headers["X-IG-Rule-Id"] == "ig.breakglass.allow"
    forged = grant[:-4] + ("AAAA" if not grant.endswith("AAAA") else "BBBB")
    refused = httpx.get(f"{gateway}/alpha/case/case-1?action=export", headers={**on_call, "X-IG-Break-Glass": forged},
                        timeout=30)
    assert refused.status_code == 403 and refused.headers["X-IG-Rule-Id"] == "ig.breakglass.invalid"
