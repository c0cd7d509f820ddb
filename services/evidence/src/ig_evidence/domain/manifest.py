"""The evidence manifest: a canonical (RFC 8785) JSON superset of the brief's schema.

``core`` is everything that describes the release's evidence; the ledger entry commits to it (payload =
canonical core). The full manifest adds ``provenance`` (the ledger entry hash) and ``ledger`` (entry fields,
checkpoint and inclusion proof), then gets signed. Artifacts are sorted by name; times come from
SOURCE_DATE_EPOCH, so identical inputs give identical bytes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import rfc8785

SCHEMA_VERSION = "ig.evidence.manifest/v1"
SIGNATURE_FILE = "manifest.json.sig"
BUNDLE_FILE = "manifest.sigstore.json"
MANIFEST_FILE = "manifest.json"
ARTIFACTS_DIR = "artifacts"
LEDGER_FIELDS = ("provenance", "ledger")
RELEASE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
ARTIFACT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,254}$")
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


class ManifestError(ValueError):
    """A manifest or an artifact list is malformed."""


@dataclass(frozen=True)
class ArtifactRecord:
    name: str
    type: str
    media_type: str
    size: int
    sha256: str

    @property
    def path(self) -> str:
        return f"{ARTIFACTS_DIR}/{self.type}/{self.name}"

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "mediaType": self.media_type, "size": self.size,
                "sha256": self.sha256, "path": self.path}


def validate_release(release: str) -> str:
    if not RELEASE_NAME.fullmatch(release):
        raise ManifestError(f"release {release!r} must match {RELEASE_NAME.pattern}")
    return release


def validate_artifact_name(name: str) -> str:
    if not ARTIFACT_NAME.fullmatch(name):
        raise ManifestError(f"artifact name {name!r} must match {ARTIFACT_NAME.pattern}")
    return name


def timestamp_from_epoch(source_date_epoch: int) -> str:
    return datetime.fromtimestamp(source_date_epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_unique_names(artifacts: Sequence[ArtifactRecord]) -> None:
    seen: dict[str, str] = {}
    for artifact in artifacts:
        if artifact.name in seen:
            raise ManifestError(f"duplicate artifact name {artifact.name!r} (types {seen[artifact.name]} "
                                f"and {artifact.type})")
        seen[artifact.name] = artifact.type


def build_core(*, release: str, created_at: str, contract_name: str, contract_version: str, contract_sha256: str,
               artifacts: Sequence[ArtifactRecord], missing: Sequence[str],
               supersedes: dict[str, Any] | None = None) -> dict[str, Any]:
    check_unique_names(artifacts)
    core: dict[str, Any] = {
        "schemaVersion": SCHEMA_VERSION,
        "release": validate_release(release),
        "createdAt": created_at,
        "contract": {"name": contract_name, "version": contract_version, "sha256": contract_sha256},
        "complete": not missing,
        "missing": list(missing),
        "artifacts": [a.as_json() for a in sorted(artifacts, key=lambda a: a.name)],
        "signature": {"format": "cosign", "algorithm": "ecdsa-p256-sha256", "file": SIGNATURE_FILE,
                      "bundle": BUNDLE_FILE},
    }
    if supersedes is not None:
        core["supersedes"] = supersedes
    return core


def canonical(document: Any) -> bytes:
    return rfc8785.dumps(document)


def core_of(manifest: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in manifest.items() if k not in LEDGER_FIELDS}


def with_ledger(core: dict[str, Any], ledger: dict[str, Any] | None) -> dict[str, Any]:
    manifest = dict(core)
    if ledger is not None:
        manifest["provenance"] = f"sha256:{ledger['entry']['entryHash']}"
        manifest["ledger"] = ledger
    return manifest


def artifacts_of(manifest: dict[str, Any]) -> list[ArtifactRecord]:
    """Parse and validate the artifact list of a manifest read from disk."""
    try:
        records = [ArtifactRecord(name=validate_artifact_name(a["name"]), type=str(a["type"]),
                                  media_type=str(a["mediaType"]), size=int(a["size"]), sha256=str(a["sha256"]))
                   for a in manifest["artifacts"]]
    except (KeyError, TypeError) as error:
        raise ManifestError(f"manifest artifacts are malformed: {error!r}") from error
    for record in records:
        if not SHA256_HEX.fullmatch(record.sha256) or record.size < 0:
            raise ManifestError(f"artifact {record.name!r}: bad sha256 or size")
        if ".." in record.type or "/" in record.type:
            raise ManifestError(f"artifact {record.name!r}: bad type {record.type!r}")
    check_unique_names(records)
    return records
