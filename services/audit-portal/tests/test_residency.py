"""Residency where the portal serves: a tenant pinned to another region than the portal's IG_REGION is refused,
judged on configuration alone; the pins are the policy's own data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi import HTTPException
from ig_common.residency import InvalidResidencyData, residency_from_policy_data
from ig_portal.api.residency import RESIDENCY_REFUSALS, ResidencyGate, ResidencyRefused
from ig_portal.domain.identity import Principal, Role
from ig_portal.settings import Settings
from pydantic import ValidationError

REPO = Path(__file__).resolve().parents[3]
POLICY_DATA = REPO / "policies" / "rego" / "ig" / "config" / "data.json"
REQUIRED = {"database_url": "postgresql://portal@127.0.0.1/x", "kafka_bootstrap": "127.0.0.1:9092"}


def test_the_policy_data_pins_alpha_to_region_a_and_gamma_to_region_b_and_leaves_beta_global() -> None:
    residency = residency_from_policy_data(POLICY_DATA.read_text(), "region-b")
    assert residency.pinned_region("alpha") == "region-a"
    assert residency.pinned_region("gamma") == "region-b"
    assert residency.pinned_region("beta") is None


@pytest.mark.parametrize(("serving", "tenant", "refused"), [
    ("region-b", "alpha", True), ("region-a", "alpha", False),
    ("region-a", "gamma", True), ("region-b", "gamma", False),
    ("region-b", "beta", False), ("region-a", "beta", False),
    ("region-b", "unknown-tenant", False),  # no pin, no default pin: global
])
def test_a_tenant_is_refused_exactly_where_it_is_not_pinned(serving: str, tenant: str, refused: bool) -> None:
    residency = residency_from_policy_data(POLICY_DATA.read_text(), serving)
    assert (residency.refusal(tenant) is not None) is refused


def test_a_default_pin_applies_to_every_tenant_without_its_own() -> None:
    document = json.dumps({"defaults": {"residency": {"pinned_region": "region-a"}},
                           "tenants": {"beta": {"residency": {}},
                                       "gamma": {"residency": {"pinned_region": "region-b"}}}})
    residency = residency_from_policy_data(document, "region-b")
    assert residency.refusal("beta") is not None and residency.refusal("new") is not None
    assert residency.refusal("gamma") is None


@pytest.mark.parametrize("document", ["not json", "[]", '{"tenants": []}', '{"tenants": {"a": {"residency": 3}}}',
                                      '{"tenants": {"a": {"residency": {"pinned_region": 7}}}}'])
def test_a_document_that_is_not_the_policy_data_is_refused(document: str) -> None:
    with pytest.raises(InvalidResidencyData):
        residency_from_policy_data(document, "region-a")


def test_the_gate_refuses_with_403_and_counts_per_pinned_region() -> None:
    gate = ResidencyGate(residency_from_policy_data(POLICY_DATA.read_text(), "region-b"))
    before = RESIDENCY_REFUSALS.labels("region-a")._value.get()
    with pytest.raises(ResidencyRefused) as refused:
        gate.admit(Principal("u1", "alpha", Role.ADMIN), where="bearer")
    assert isinstance(refused.value, HTTPException) and refused.value.status_code == 403
    assert "pinned to region-a" in str(refused.value.detail) and "region-b" in str(refused.value.detail)
    assert RESIDENCY_REFUSALS.labels("region-a")._value.get() == before + 1
    gate.admit(Principal("u2", "beta", Role.AUDITOR), where="bearer")  # a global tenant is served


def test_settings_read_the_pins_with_the_portal_region_and_refuse_a_bad_file(tmp_path: Path) -> None:
    settings = Settings(**REQUIRED, region="region-b", tenant_residency_file=str(POLICY_DATA))
    assert settings.residency.serving_region == "region-b"
    assert settings.residency.refusal("alpha") is not None
    assert Settings(**REQUIRED, tenant_residency_file=str(POLICY_DATA)).residency.refusal("alpha") is None
    bad = tmp_path / "data.json"
    bad.write_text('{"tenants": {"alpha": {"residency": {"pinned_region": ""}}}}')
    for path in ("", "  ", str(bad), str(tmp_path / "missing.json")):  # unset fails closed, as a bad file does
        with pytest.raises(ValidationError, match="tenant_residency_file"):
            Settings(**REQUIRED, tenant_residency_file=path)
    with pytest.raises(ValidationError, match="unset: name the policy data document"):
        Settings(**REQUIRED)
