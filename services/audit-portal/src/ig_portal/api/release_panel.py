"""The release page's verification panel: signature against the pinned signer and ledger inclusion (the verify kit,
checked on the server), evidence completeness against the contract, and what changed since the tenant's previous
release, with the release's amendment history. Each part that cannot be had says so; none fails the page."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from ig_evidence.bundle.build import load_contract

from ig_portal.api.verification import ReleaseVerifier, SignatureStatus, Verification
from ig_portal.clients.evidence import (
    ArtifactView,
    BundleVersionView,
    EvidenceCatalog,
    ManifestFiles,
    NdaRequired,
    NotFound,
    ReleaseView,
    Unavailable,
)
from ig_portal.domain.completeness import CompletenessView, ContractTerms, Requirement, completeness_view
from ig_portal.domain.identity import Principal
from ig_portal.domain.release_diff import ArtifactDigest, ReleaseDiff, diff_releases, previous_release

log = structlog.get_logger(__name__)
UNAVAILABLE = (NotFound, NdaRequired, Unavailable, NotImplementedError)


@dataclass(frozen=True)
class Panel:
    verification: Verification
    completeness: CompletenessView | None
    completeness_note: str
    changes: ReleaseDiff | None
    history: list[BundleVersionView] | None  # None: the evidence service did not say


def load_contracts(paths: tuple[Path, ...]) -> dict[str, ContractTerms]:
    """The contracts the portal holds, by the SHA-256 of their document (what a manifest records)."""
    found: dict[str, ContractTerms] = {}
    for path in paths:
        contract, sha256 = load_contract(path)
        found[sha256] = ContractTerms(contract.name, contract.version, sha256, contract.ledger_anchor_required,
                                      tuple(Requirement(t.name, t.required, t.min_items, t.description)
                                            for t in contract.types))
    return found


def _digests(artifacts: list[ArtifactView]) -> list[ArtifactDigest]:
    return [ArtifactDigest(a.name, a.type, a.sha256, a.size) for a in artifacts]


class ReleasePanel:
    def __init__(self, catalog: EvidenceCatalog, verifier: ReleaseVerifier,
                 contracts: dict[str, ContractTerms]) -> None:
        self.catalog = catalog
        self.verifier = verifier
        self.contracts = contracts

    async def build(self, user: Principal, release: ReleaseView, artifacts: list[ArtifactView],
                    manifest: ManifestFiles | None) -> Panel:
        signer_name = manifest.signer_name if manifest else ""
        signer_key_id = manifest.signer_key_id if manifest else ""
        verification, completeness, changes, history = await asyncio.gather(
            self.verifier.verify(user, release, signer_name, signer_key_id),
            self._completeness(user, release, manifest), self._changes(user, release, artifacts),
            self._history(user, release))
        view, note = completeness
        return Panel(verification, view, note, changes, history)

    async def _completeness(self, user: Principal, release: ReleaseView, manifest: ManifestFiles | None
                            ) -> tuple[CompletenessView | None, str]:
        document = _manifest_document(manifest, release.manifest_sha256)
        if document is None:
            return None, "the signed manifest is not available from the evidence service"
        try:
            service_missing: list[str] | None = await self.catalog.completeness(user, release.name)
        except UNAVAILABLE:
            service_missing = None
        contract = document.get("contract") or {}
        types = Counter(str(a.get("type", "")) for a in document.get("artifacts", []) if isinstance(a, dict))
        view = completeness_view(contract_name=str(contract.get("name", "")),
                                 contract_version=str(contract.get("version", "")),
                                 contract_sha256=str(contract.get("sha256", "")), known=self.contracts,
                                 types_present=types, anchored="ledger" in document,
                                 signed_missing=[str(m) for m in document.get("missing", [])],
                                 service_missing=service_missing)
        return view, ""

    async def _changes(self, user: Principal, release: ReleaseView, artifacts: list[ArtifactView]
                       ) -> ReleaseDiff | None:
        try:
            names = [r.name for r in await self.catalog.releases(user)]
            previous = previous_release(names, release.name)
            before = await self.catalog.artifacts(user, previous) if previous else []
        except UNAVAILABLE:
            return None
        return diff_releases(previous, _digests(before), _digests(artifacts))

    async def _history(self, user: Principal, release: ReleaseView) -> list[BundleVersionView] | None:
        try:
            return await self.catalog.bundle_history(user, release.name)
        except UNAVAILABLE:
            return None


def _manifest_document(manifest: ManifestFiles | None, expected_sha256: str) -> dict[str, Any] | None:
    """The manifest as registered: its bytes must hash to the registered manifest SHA-256 (which the verify kit
    check ties to the signature), else it is not used."""
    data = manifest.files.get("manifest.json") if manifest else None
    if not data or hashlib.sha256(data).hexdigest() != expected_sha256:
        return None
    try:
        document = json.loads(data)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


__all__ = ["Panel", "ReleasePanel", "SignatureStatus", "load_contracts"]
