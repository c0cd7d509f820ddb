"""Golden scenarios against the Rego directly: a private OPA over policies/rego, queried over its REST API."""

from __future__ import annotations

from collections import Counter

import httpx
import pytest
from ig_policy.testing import GoldenCase, OpaServer, golden_cases

pytestmark = pytest.mark.integration

CASES = golden_cases()


def test_there_are_enough_scenarios_for_every_dimension_and_outcome() -> None:
    assert len(CASES) >= 60
    outcomes = Counter((case.file, case.expect["result"]) for case in CASES)
    for dimension in ("time_windows", "network_zones", "device_trust", "session_risk", "auth_level", "residency",
                      "break_glass", "tenant_purpose_roles"):
        assert outcomes[(dimension, "ALLOW")] and outcomes[(dimension, "DENY")], dimension
    for dimension in ("device_trust", "session_risk", "auth_level", "break_glass"):
        assert outcomes[(dimension, "STEP_UP")], dimension


@pytest.fixture(scope="module")
def opa(private_opa: OpaServer) -> httpx.Client:
    with httpx.Client(base_url=private_opa.url, headers=private_opa.headers, timeout=10) as client:
        yield client


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_rego_answers_the_golden_case(case: GoldenCase, opa: httpx.Client) -> None:
    reply = opa.post("/v1/data/ig/ctx/decision", json={"input": case.input})
    assert reply.status_code == 200
    decision = reply.json()["result"]
    assert case.mismatches(decision) == []
    assert decision["reasons"][0] == {"rule_id": decision["rule_id"], "message": decision["explanation"]}
