"""Evidence completeness item by item against the contract (domain/completeness.py)."""

from __future__ import annotations

import pytest
from ig_portal.domain.completeness import (
    LEDGER_ANCHOR_ITEM,
    ContractTerms,
    ItemStatus,
    Requirement,
    completeness_view,
)

CONTRACT = ContractTerms("mc-release-evidence", "1.0.0", "c" * 64, True, (
    Requirement("sbom", True, 1), Requirement("schema-diff", True, 2), Requirement("dr-log", True, 1),
    Requirement("portal-access-log", False, 1)))
KNOWN = {CONTRACT.sha256: CONTRACT}
FULL = {"sbom": 1, "schema-diff": 2, "dr-log": 3}


def view(types: dict[str, int], *, sha: str = "c" * 64, anchored: bool = True, signed: list[str] | None = None,
         service: list[str] | None = None):  # type: ignore[no-untyped-def]
    return completeness_view(contract_name="mc-release-evidence", contract_version="1.0.0", contract_sha256=sha,
                             known=KNOWN, types_present=types, anchored=anchored, signed_missing=signed or [],
                             service_missing=service)


def statuses(found) -> dict[str, ItemStatus]:  # type: ignore[no-untyped-def]
    return {item.type: item.status for item in found.items}


@pytest.mark.parametrize(("types", "anchored", "signed", "complete", "expected"), [
    (FULL, True, [], True, {"sbom": ItemStatus.PRESENT, "schema-diff": ItemStatus.PRESENT,
                            "dr-log": ItemStatus.PRESENT, "portal-access-log": ItemStatus.OPTIONAL_ABSENT,
                            LEDGER_ANCHOR_ITEM: ItemStatus.PRESENT}),
    # one of two schema-diff items is not enough
    ({**FULL, "schema-diff": 1}, True, ["schema-diff: 1 of 2 required artifact(s)"], False,
     {"schema-diff": ItemStatus.MISSING}),
    ({"sbom": 1, "schema-diff": 2}, True, ["dr-log: 0 of 1 required artifact(s)"], False,
     {"dr-log": ItemStatus.MISSING}),
    ({**FULL, "portal-access-log": 1}, True, [], True, {"portal-access-log": ItemStatus.PRESENT}),
    (FULL, False, [f"{LEDGER_ANCHOR_ITEM}: the manifest is not anchored"], False,
     {LEDGER_ANCHOR_ITEM: ItemStatus.MISSING}),
])
def test_each_required_item_is_present_or_missing(types: dict[str, int], anchored: bool, signed: list[str],
                                                  complete: bool, expected: dict[str, ItemStatus]) -> None:
    found = view(types, anchored=anchored, signed=signed)
    assert found.contract_known and found.complete is complete and not found.disagreements
    assert expected.items() <= statuses(found).items()


def test_a_manifest_claiming_completeness_the_contract_denies_is_not_complete() -> None:
    found = view({"sbom": 1, "schema-diff": 2}, signed=[])  # dr-log absent, but the manifest lists nothing missing
    assert not found.complete and statuses(found)["dr-log"] is ItemStatus.MISSING
    assert found.disagreements and "dr-log" in found.disagreements[0]


def test_the_evidence_service_disagreeing_with_the_signed_manifest_is_shown() -> None:
    found = view(FULL, service=["sbom: 0 of 1 required artifact(s)"])
    assert not found.complete and any("evidence service" in d for d in found.disagreements)


def test_an_unknown_contract_shows_the_signed_manifests_own_statement() -> None:
    found = view({"sbom": 1, "dr-log": 1}, sha="d" * 64, signed=["schema-diff: 0 of 2 required artifact(s)"])
    assert not found.contract_known and not found.complete
    assert statuses(found) == {"sbom": ItemStatus.PRESENT, "dr-log": ItemStatus.PRESENT,
                               "schema-diff": ItemStatus.MISSING}
