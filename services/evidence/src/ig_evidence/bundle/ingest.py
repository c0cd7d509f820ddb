"""Checking an uploaded bundle and moving its artifacts into the content-addressed blob store.

Runs in a worker thread (file I/O). The bundle is verified first (signature, hashes, ledger anchor) and only then
are its artifacts copied out, so a rejected upload leaves nothing referenced behind.
"""

from __future__ import annotations

import hashlib
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ig_evidence.bundle.signer import BundleSigner
from ig_evidence.bundle.verify import check_contents, locate, read_capped
from ig_evidence.domain import manifest as mf
from ig_evidence.store.blobs import BlobStore


class BundleRejected(ValueError):
    """The upload is not a valid, intact, signed bundle (the message lists why)."""


@dataclass(frozen=True)
class IngestedBundle:
    manifest: dict[str, Any]
    manifest_sha256: str
    archive_sha256: str
    records: list[mf.ArtifactRecord]
    signer: BundleSigner


def ingest(archive: Path, archive_sha256: str, blobs: BlobStore,
           identify: Callable[[dict[str, bytes]], BundleSigner], pinned_ledger_key: str | None) -> IngestedBundle:
    """``identify`` picks the trusted signer from the bundle's metadata files (raising SignerNotTrusted); the
    whole bundle is then verified against that signer's pinned key, never against a key it carries."""
    contents, _ = locate(archive)  # one pass: every member hashed, the metadata files kept
    if contents.problems:  # not a readable tar, an unsafe member, a metadata file over its cap
        raise BundleRejected("; ".join(contents.problems))
    signer = identify(contents.metadata)
    checked = check_contents(contents, signer.public_key, pinned_ledger_key=pinned_ledger_key, allow_incomplete=True)
    if not checked.ok or checked.manifest is None:
        raise BundleRejected("; ".join(checked.problems) or "bundle has no manifest")
    manifest = checked.manifest
    records = mf.artifacts_of(manifest)
    wanted = {r.path: r for r in records}
    manifest_bytes = b""
    with tarfile.open(archive, "r:*") as tar:
        for member in tar:
            handle = tar.extractfile(member) if member.isreg() else None
            if handle is None:
                continue
            if member.name == mf.MANIFEST_FILE:
                manifest_bytes = read_capped(handle, member.name)  # verify_bundle refused a larger one already
            elif member.name in wanted:
                digest, _ = blobs.put_stream(handle)
                if digest != wanted[member.name].sha256:  # the archive changed between the two passes
                    raise BundleRejected(f"artifact {wanted[member.name].name}: changed while being stored")
    blobs.adopt(archive, archive_sha256)  # the bundle itself is kept too, content-addressed like its artifacts
    return IngestedBundle(manifest=manifest, manifest_sha256=hashlib.sha256(manifest_bytes).hexdigest(),
                          archive_sha256=archive_sha256, records=records, signer=signer)


def read_metadata_files(archive: Path) -> dict[str, bytes]:
    """manifest.json, its signature, its Sigstore bundle and cosign.pub, byte for byte as in the bundle."""
    wanted = {mf.MANIFEST_FILE, mf.SIGNATURE_FILE, mf.BUNDLE_FILE, "cosign.pub"}
    found: dict[str, bytes] = {}
    with tarfile.open(archive, "r:*") as tar:
        for member in tar:
            if member.name in wanted and member.isreg():
                handle = tar.extractfile(member)
                if handle is not None:
                    found[member.name] = read_capped(handle, member.name)
    return found


def manifest_summary(manifest: dict[str, Any]) -> tuple[bool, list[str], str]:
    return bool(manifest.get("complete")), [str(m) for m in manifest.get("missing", [])], \
        str(manifest.get("contract", {}).get("version", ""))


def ledger_payload(release: str, tenant: str, manifest_sha256: str, archive_sha256: str) -> bytes:
    return mf.canonical({"release": release, "tenant": tenant, "manifestSha256": manifest_sha256,
                         "archiveSha256": archive_sha256})



