"""Evidence completeness of a release, item by item, against the contract its manifest names (pure).

The manifest is signed and records the contract it was checked against (name, version, SHA-256 of the document)
and its own list of what was missing. When the portal holds that very contract (same SHA-256), each requirement is
decided here from the manifest's artifact types; otherwise only the signed manifest's own statement can be shown,
and the view says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

LEDGER_ANCHOR_ITEM = "ledger-anchor"  # as ig_evidence.domain.contract names it in a manifest's missing list


class ItemStatus(StrEnum):
    PRESENT = "present"
    MISSING = "missing"
    OPTIONAL_ABSENT = "optional, absent"


@dataclass(frozen=True)
class Requirement:
    """One artifact type of a contract."""

    type: str
    required: bool
    min_items: int
    description: str = ""


@dataclass(frozen=True)
class ContractTerms:
    name: str
    version: str
    sha256: str
    ledger_anchor_required: bool
    requirements: tuple[Requirement, ...]


@dataclass(frozen=True)
class ItemView:
    type: str
    status: ItemStatus
    have: int
    need: int  # 0 for an item that is not required
    description: str = ""


@dataclass(frozen=True)
class CompletenessView:
    contract: str  # "name version", as the manifest names it
    contract_known: bool  # the portal holds the document with the manifest's SHA-256
    items: tuple[ItemView, ...]
    complete: bool
    # The manifest's own signed list and the evidence service's answer disagree with the items above (or with
    # each other): shown, never hidden.
    disagreements: tuple[str, ...] = ()


def missing_types(lines: Sequence[str]) -> set[str]:
    """The item each "type: …" line of a missing list is about."""
    return {line.split(":", 1)[0].strip() for line in lines if line.strip()}


def completeness_view(*, contract_name: str, contract_version: str, contract_sha256: str,
                      known: Mapping[str, ContractTerms], types_present: Mapping[str, int], anchored: bool,
                      signed_missing: Sequence[str], service_missing: Sequence[str] | None) -> CompletenessView:
    """``known``: the contracts the portal holds, by SHA-256; ``types_present``: artifacts per type in the manifest;
    ``signed_missing``: the manifest's ``missing``; ``service_missing``: the evidence service's Completeness answer
    (None when it gave none)."""
    label = f"{contract_name} {contract_version}".strip()
    terms = known.get(contract_sha256)
    items: list[ItemView] = []
    if terms is not None:
        for term in terms.requirements:
            have = types_present.get(term.type, 0)
            if not term.required:
                status = ItemStatus.PRESENT if have else ItemStatus.OPTIONAL_ABSENT
            else:
                status = ItemStatus.PRESENT if have >= term.min_items else ItemStatus.MISSING
            items.append(ItemView(term.type, status, have, term.min_items if term.required else 0,
                                  term.description))
        if terms.ledger_anchor_required:
            items.append(ItemView(LEDGER_ANCHOR_ITEM, ItemStatus.PRESENT if anchored else ItemStatus.MISSING,
                                  int(anchored), 1, "the manifest is anchored in the provenance ledger"))
    else:
        absent = missing_types(signed_missing)
        items.extend(ItemView(kind, ItemStatus.PRESENT, count, 0) for kind, count in sorted(types_present.items())
                     if kind not in absent)
        items.extend(ItemView(kind, ItemStatus.MISSING, types_present.get(kind, 0), 0) for kind in sorted(absent))
    decided = {item.type for item in items if item.status is ItemStatus.MISSING}
    disagreements = []
    if terms is not None and missing_types(signed_missing) != decided:
        disagreements.append(f"the signed manifest lists missing {sorted(missing_types(signed_missing))}, the "
                             f"contract gives {sorted(decided)}")
    if service_missing is not None and missing_types(service_missing) != missing_types(signed_missing):
        disagreements.append(f"the evidence service reports missing {sorted(missing_types(service_missing))}, the "
                             f"signed manifest {sorted(missing_types(signed_missing))}")
    return CompletenessView(label, terms is not None, tuple(items), not decided and not disagreements,
                            tuple(disagreements))
