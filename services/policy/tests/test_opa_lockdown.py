"""OPA's API is locked (policies/opa-system/authz.rego): a real OPA, started as ig-infra and the charts start it.

Nobody changes policies or data through the API, with or without the policy service's token; without the token
nothing but /health answers; with it, decisions and the policy revision do.
"""

from __future__ import annotations

import json
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from ig_infra.components.opa import SYSTEM_POLICIES, ensure_opa_token  # type: ignore[import-untyped]
from ig_policy.domain.model import ENGINE_UNAVAILABLE, Result
from ig_policy.domain.revision import policy_revision
from ig_policy.engine.opa import OpaEngine
from ig_policy.testing import POLICIES, OpaServer, golden_cases, opa_binary, opa_server

pytestmark = pytest.mark.integration

ALLOWED = next(c for c in golden_cases() if c.name == "same tenant and purpose may read").input
DECISION = "/v1/data/ig/ctx/decision"
EVIL_POLICY = "package ig.ctx\n\ndecision := {\"result\": \"ALLOW\", \"rule_id\": \"evil\"}\n"
REFUSED = (401, 403)


@pytest.fixture(scope="module")
def opa() -> Iterator[OpaServer]:
    # Its own OPA: if the lock failed, these tests' writes must not spoil the policies other tests decide with.
    with opa_server() as server:
        yield server


@pytest.fixture
def anonymous(opa: OpaServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=opa.url, timeout=10) as client:
        yield client


@pytest.fixture
def service(opa: OpaServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=opa.url, headers=opa.headers, timeout=10) as client:
        yield client


def loaded(service: httpx.Client) -> tuple[list[str], object, object]:
    """What decisions depend on: the loaded modules' sources, the data OPA holds under ig, a decision."""
    policies = service.get("/v1/policies")
    assert policies.status_code == 200
    sources = sorted(module["raw"] for module in policies.json()["result"])
    config = service.get("/v1/data/ig/config").json()["result"]
    return sources, config, decide(service)


def decide(client: httpx.Client) -> object:
    reply = client.post(DECISION, json={"input": ALLOWED})
    assert reply.status_code == 200, reply.text
    return reply.json()["result"]


def test_health_is_open(anonymous: httpx.Client) -> None:
    assert anonymous.get("/health").status_code == 200
    assert anonymous.get("/health", params={"bundles": ""}).status_code == 200


def test_decisions_need_the_token(opa: OpaServer, anonymous: httpx.Client, service: httpx.Client) -> None:
    assert anonymous.post(DECISION, json={"input": ALLOWED}).status_code in REFUSED
    wrong = {"Authorization": "Bearer " + "x" * len(opa.token)}
    assert anonymous.post(DECISION, json={"input": ALLOWED}, headers=wrong).status_code in REFUSED
    assert decide(service)["result"] == "ALLOW"


@pytest.mark.parametrize("with_token", [False, True], ids=["anonymous", "service-token"])
def test_nobody_changes_policies_or_data_through_the_api(
    anonymous: httpx.Client, service: httpx.Client, with_token: bool
) -> None:
    before = loaded(service)
    client = service if with_token else anonymous
    policy_id = service.get("/v1/policies").json()["result"][0]["id"]
    attempts = [
        client.put("/v1/policies/x", content=EVIL_POLICY, headers={"Content-Type": "text/plain"}),
        client.put(f"/v1/policies/{policy_id}", content=EVIL_POLICY, headers={"Content-Type": "text/plain"}),
        client.delete(f"/v1/policies/{policy_id}"),
        client.put("/v1/data/ig/config", json={}),
        client.patch("/v1/data/ig/config", json=[{"op": "remove", "path": "/tenants"}],
                     headers={"Content-Type": "application/json-patch+json"}),
        client.put("/v1/data", json={}),
        client.delete("/v1/data/ig"),
        # The guard's own input: whoever could replace the token's digest would own the API.
        client.put("/v1/data/system/opa_token", json={"sha256": "0" * 64}),
    ]
    assert [reply.status_code for reply in attempts] == [attempts[0].status_code] * len(attempts)
    assert attempts[0].status_code in REFUSED
    assert loaded(service) == before


def test_the_token_neither_queries_freely_nor_reads_the_guard(service: httpx.Client) -> None:
    for reply in (
        service.post("/v1/query", json={"query": "data.system.opa_token = x"}),
        service.get("/v1/query", params={"q": "data.system.opa_token = x"}),
        service.post("/v1/compile", json={"query": "data.system.opa_token = x"}),
        service.get("/v1/data/system/opa_token"),
        service.get("/v1/data"),
        service.get("/v1/config"),
        service.post("/", json={}),
    ):
        assert reply.status_code in REFUSED, (reply.request.url, reply.status_code, reply.text[:200])


async def test_the_engine_without_the_token_fails_closed() -> None:
    with opa_server() as opa:  # untouched by the write attempts above, should they have got through
        engine = OpaEngine(opa.url, timeout_ms=5000)
        await check_fails_closed(engine)


async def check_fails_closed(engine: OpaEngine) -> None:
    await engine.start()
    try:
        verdict = await engine.evaluate(ALLOWED)
        assert await engine.refresh_revision() == engine.revision == "unknown"
    finally:
        await engine.close()
    assert verdict.result is Result.DENY and verdict.rule_id == ENGINE_UNAVAILABLE


async def test_the_engine_with_the_token_decides_and_stamps_the_decision_policy_only(opa: OpaServer) -> None:
    engine = OpaEngine(opa.url, timeout_ms=5000, token=opa.token)
    await engine.start()
    try:
        verdict = await engine.evaluate(ALLOWED)
        revision = await engine.refresh_revision()
    finally:
        await engine.close()
    assert verdict.result is Result.ALLOW
    # The revision names the decision policy alone (every module under policies/rego and data.ig.config), the same
    # wherever it is served, whatever guards the sidecar's API there.
    sources = [path.read_text(encoding="utf-8") for path in POLICIES.rglob("*.rego")]
    config = json.loads((POLICIES / "ig" / "config" / "data.json").read_text(encoding="utf-8"))
    assert revision == policy_revision(sources, config)


def test_the_token_is_private_and_opa_holds_only_its_digest(tmp_path: Path) -> None:
    token = ensure_opa_token(tmp_path)
    for path in (token.token_file, token.digest_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert token.value not in token.digest_file.read_text()
    again = ensure_opa_token(tmp_path)
    assert again.value == token.value and len(token.value) >= 43
    assert json.loads(token.digest_file.read_text())["sha256"] != json.loads(
        ensure_opa_token(tmp_path / "other").digest_file.read_text())["sha256"]


def test_the_guard_policy_passes_its_own_tests() -> None:
    opa = opa_binary()
    assert subprocess.run([opa, "fmt", "--fail", "--list", str(SYSTEM_POLICIES)], capture_output=True).returncode == 0
    result = subprocess.run([opa, "test", "--coverage", str(SYSTEM_POLICIES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert json.loads(result.stdout)["coverage"] == 100
