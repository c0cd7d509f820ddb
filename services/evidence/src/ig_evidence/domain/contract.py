"""The versioned evidence contract: which artifact types a release must carry (like a Chainloop contract).

A contract is data (YAML under policies/evidence/); this module validates its shape and answers "what is
missing?" for a set of collected artifacts. Unknown keys are rejected so a typo cannot silently weaken it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

API_VERSION = "evidence.ig/v1"
KIND = "EvidenceContract"
TYPE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
SOURCES = ("generated", "collected")


class ContractError(ValueError):
    """The contract document is malformed."""


@dataclass(frozen=True)
class ArtifactType:
    name: str
    media_type: str
    required: bool
    min_items: int
    source: str
    description: str


@dataclass(frozen=True)
class EvidenceContract:
    name: str
    version: str
    ledger_anchor_required: bool
    types: tuple[ArtifactType, ...]

    def type_named(self, name: str) -> ArtifactType | None:
        return next((t for t in self.types if t.name == name), None)

    def type_names(self) -> list[str]:
        return [t.name for t in self.types]


def _require(mapping: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in mapping:
        raise ContractError(f"{where}.{key}: missing")
    value = mapping[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ContractError(f"{where}.{key}: must be a {kind.__name__}")
    return value


def _only_keys(mapping: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(mapping) - allowed)
    if unknown:
        raise ContractError(f"{where}: unknown key(s) {', '.join(unknown)}")


def parse_contract(document: object) -> EvidenceContract:
    if not isinstance(document, dict):
        raise ContractError("contract: must be a mapping")
    _only_keys(document, {"apiVersion", "kind", "metadata", "spec"}, "contract")
    if document.get("apiVersion") != API_VERSION or document.get("kind") != KIND:
        raise ContractError(f"contract: apiVersion/kind must be {API_VERSION}/{KIND}")
    metadata = _require(document, "metadata", dict, "contract")
    spec = _require(document, "spec", dict, "contract")
    _only_keys(spec, {"ledgerAnchor", "types"}, "spec")
    anchor = spec.get("ledgerAnchor", "required")
    if anchor not in ("required", "optional"):
        raise ContractError("spec.ledgerAnchor: must be required or optional")
    raw_types = _require(spec, "types", list, "spec")
    types = []
    for index, raw in enumerate(raw_types):
        where = f"spec.types[{index}]"
        if not isinstance(raw, dict):
            raise ContractError(f"{where}: must be a mapping")
        _only_keys(raw, {"type", "mediaType", "required", "minItems", "source", "description"}, where)
        name = _require(raw, "type", str, where)
        if not TYPE_NAME.fullmatch(name):
            raise ContractError(f"{where}.type: {name!r} must be lower-kebab-case")
        source = raw.get("source", "collected")
        if source not in SOURCES:
            raise ContractError(f"{where}.source: must be one of {', '.join(SOURCES)}")
        required = raw.get("required", True)
        min_items = raw.get("minItems", 1)
        if not isinstance(required, bool) or not isinstance(min_items, int) or min_items < 0:
            raise ContractError(f"{where}: required must be a boolean and minItems a non-negative integer")
        types.append(ArtifactType(name=name, media_type=_require(raw, "mediaType", str, where), required=required,
                                  min_items=min_items, source=source, description=str(raw.get("description", ""))))
    names = [t.name for t in types]
    if len(set(names)) != len(names):
        raise ContractError("spec.types: a type is declared twice")
    return EvidenceContract(name=_require(metadata, "name", str, "metadata"),
                            version=str(_require(metadata, "version", str, "metadata")),
                            ledger_anchor_required=anchor == "required", types=tuple(types))


LEDGER_ANCHOR_ITEM = "ledger-anchor"


def missing_items(contract: EvidenceContract, counts_by_type: Mapping[str, int], anchored: bool) -> list[str]:
    """Each unmet requirement as one human-readable line, in contract order."""
    missing = []
    for artifact_type in contract.types:
        have = counts_by_type.get(artifact_type.name, 0)
        if artifact_type.required and have < artifact_type.min_items:
            missing.append(f"{artifact_type.name}: {have} of {artifact_type.min_items} required artifact(s)"
                           + (f" ({artifact_type.description})" if artifact_type.description else ""))
    if contract.ledger_anchor_required and not anchored:
        missing.append(f"{LEDGER_ANCHOR_ITEM}: the manifest is not anchored in the provenance ledger")
    return missing
