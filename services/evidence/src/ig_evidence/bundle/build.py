"""``ig-evidence build``: inputs + generated evidence -> signed manifest + normalised bundle, all or nothing.

Everything is written into a temporary sibling of ``--out`` and renamed into place at the end, so a failure
leaves no half-written bundle. Archive order is deterministic: the artifacts sorted by path, then the
provenance attestation (it covers the others' digests), then the manifest and its signatures.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
import yaml
from cryptography.hazmat.primitives.asymmetric import ec

from ig_evidence.bundle import generated
from ig_evidence.bundle.archive import NormalisedTar
from ig_evidence.bundle.inputs import PlannedArtifact, check_unique, plan_inputs
from ig_evidence.domain import manifest as mf
from ig_evidence.domain import signatures
from ig_evidence.domain.contract import EvidenceContract, missing_items, parse_contract
from ig_evidence.domain.provenance import Subject, provenance_statement
from ig_evidence.keys import public_pem

log = structlog.get_logger(__name__)

# (kind, subject, payload) -> the manifest's ledger section
Anchor = Callable[[str, str, bytes], dict[str, Any]]
PROVENANCE_NAME = "provenance.intoto.dsse.json"
DEFAULT_MAX_ARTIFACT_BYTES = 8 << 30


class IncompleteEvidence(Exception):
    def __init__(self, missing: list[str]) -> None:
        super().__init__("missing required evidence:\n" + "\n".join(f"  - {m}" for m in missing))
        self.missing = missing


@dataclass
class BuildRequest:
    release: str
    out: Path
    contract_path: Path
    signing_key: ec.EllipticCurvePrivateKey
    source_date_epoch: int
    repo_root: Path
    inputs: Path | None = None
    previous: Path | None = None
    allow_incomplete: bool = False
    compression: str = "gzip"
    max_artifact_bytes: int = DEFAULT_MAX_ARTIFACT_BYTES
    anchor: Anchor | None = None
    force: bool = False
    generate: frozenset[str] = frozenset({"sbom", "schema-diff", "provenance"})
    supersedes: dict[str, Any] | None = None
    ledger_kind: str = "evidence.manifest"
    # What the release ships beside the bundle (its images), attested by the provenance too: domain/provenance.py.
    shipped: tuple[Subject, ...] = ()


@dataclass
class BuildResult:
    out: Path
    archive: Path
    manifest: dict[str, Any]
    manifest_sha256: str
    missing: list[str] = field(default_factory=list)
    shipped: tuple[Subject, ...] = ()


def load_contract(path: Path) -> tuple[EvidenceContract, str]:
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ValueError(f"contract {path}: {error.strerror}") from error
    return parse_contract(yaml.safe_load(raw)), hashlib.sha256(raw).hexdigest()


def archive_name(release: str, compression: str) -> str:
    return f"evidence-{release}.tar" + (".gz" if compression == "gzip" else "")


def _json_bytes(document: Any) -> bytes:
    return mf.canonical(document)


def _generated(request: BuildRequest, contract: EvidenceContract, created: str) -> list[PlannedArtifact]:
    out: list[PlannedArtifact] = []

    def add(type_name: str, name: str, document: Any) -> None:
        artifact_type = contract.type_named(type_name)
        if artifact_type is not None:
            data = _json_bytes(document)
            out.append(PlannedArtifact(name=name, type=type_name, media_type=artifact_type.media_type,
                                       size=len(data), content=data))

    if "sbom" in request.generate:
        add("sbom", "sbom.spdx.json", generated.python_environment_sbom(request.release, created))
    if "schema-diff" in request.generate:
        snapshot, diff = generated.schema_documents(request.repo_root, request.previous)
        add("schema-diff", "schema-diff.json", diff)
        add("schema-diff", generated.SNAPSHOT_NAME, snapshot)
    return out


def build(request: BuildRequest) -> BuildResult:
    mf.validate_release(request.release)
    contract, contract_sha256 = load_contract(request.contract_path)
    created = mf.timestamp_from_epoch(request.source_date_epoch)
    planned = plan_inputs(request.inputs, contract, max_artifact_bytes=request.max_artifact_bytes) \
        if request.inputs is not None else []
    planned += _generated(request, contract, created)
    provenance_type = contract.type_named("provenance") if "provenance" in request.generate else None
    placeholder = [PlannedArtifact(PROVENANCE_NAME, "provenance", "", 0)] if provenance_type else []
    if request.shipped and provenance_type is None:
        raise ValueError("--subjects: the contract has no provenance type to attest them in")
    clashes = sorted({a.name for a in planned} & {s.name for s in request.shipped})
    if clashes:
        raise ValueError(f"--subjects: subject {clashes[0]!r}: also the name of an artifact in the bundle")
    check_unique(planned + placeholder)
    counts = Counter(a.type for a in planned + placeholder)
    missing = missing_items(contract, counts, anchored=request.anchor is not None)
    if missing and not request.allow_incomplete:
        raise IncompleteEvidence(missing)
    _check_out(request.out, request.force)
    staging = Path(tempfile.mkdtemp(dir=request.out.parent, prefix=f".{request.out.name}.tmp-"))
    try:
        result = _write(request, contract, contract_sha256, created, planned, provenance_type is not None,
                        missing, staging)
        staging.chmod(0o755)  # mkdtemp makes it private; a bundle is meant to be shared
        _replace(staging, request.out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    result.out = request.out
    result.shipped = request.shipped
    result.archive = request.out / result.archive.name
    log.info("evidence_built", release=request.release, artifacts=len(result.manifest["artifacts"]),
             shipped_subjects=len(request.shipped), complete=not missing, manifest_sha256=result.manifest_sha256)
    return result


def _write(request: BuildRequest, contract: EvidenceContract, contract_sha256: str, created: str,
           planned: list[PlannedArtifact], with_provenance: bool, missing: list[str], staging: Path) -> BuildResult:
    archive = staging / archive_name(request.release, request.compression)
    tar = NormalisedTar(archive, mtime=request.source_date_epoch, compression=request.compression)
    records: list[mf.ArtifactRecord] = []
    try:
        for artifact in sorted(planned, key=lambda a: a.path):
            if artifact.content is not None:
                digest = tar.add_bytes(artifact.path, artifact.content)
            else:
                assert artifact.source is not None
                digest = tar.add_file(artifact.path, artifact.source, artifact.size)
            records.append(mf.ArtifactRecord(artifact.name, artifact.type, artifact.media_type, artifact.size,
                                             digest))
        if with_provenance:
            statement = provenance_statement(
                release=request.release, subjects=records, builder_id=generated.builder_id(), started_on=created,
                source=generated.source_revision(request.repo_root), contract_version=contract.version,
                shipped=request.shipped)
            envelope = _json_bytes(signatures.dsse_envelope(request.signing_key, _json_bytes(statement)))
            media_type = contract.type_named("provenance").media_type  # type: ignore[union-attr]
            record = mf.ArtifactRecord(PROVENANCE_NAME, "provenance", media_type, len(envelope), "")
            digest = tar.add_bytes(record.path, envelope)
            records.append(mf.ArtifactRecord(record.name, record.type, media_type, len(envelope), digest))
        core = mf.build_core(release=request.release, created_at=created, contract_name=contract.name,
                             contract_version=contract.version, contract_sha256=contract_sha256, artifacts=records,
                             missing=missing, supersedes=request.supersedes)
        ledger = request.anchor(request.ledger_kind, request.release, mf.canonical(core)) if request.anchor else None
        manifest = mf.with_ledger(core, ledger)
        manifest_bytes = mf.canonical(manifest)
        signature = signatures.sign(request.signing_key, manifest_bytes)
        public_key = request.signing_key.public_key()
        files = {
            mf.MANIFEST_FILE: manifest_bytes,
            mf.SIGNATURE_FILE: base64.b64encode(signature),
            mf.BUNDLE_FILE: json.dumps(signatures.sigstore_bundle(public_key, manifest_bytes, signature),
                                       indent=2, sort_keys=True).encode() + b"\n",
            "cosign.pub": public_pem(public_key),
        }
        for name in sorted(files):
            tar.add_bytes(name, files[name])
    finally:
        tar.close()
    for name, data in files.items():
        (staging / name).write_bytes(data)
    return BuildResult(out=staging, archive=archive, manifest=manifest,
                       manifest_sha256=hashlib.sha256(manifest_bytes).hexdigest(), missing=missing)


def _check_out(out: Path, force: bool) -> None:
    if not out.parent.is_dir():
        raise ValueError(f"--out {out}: parent directory does not exist")
    if out.exists() and not force and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"--out {out} exists and is not empty; pass --force to replace it")


def _replace(staging: Path, out: Path) -> None:
    if out.exists():
        retired = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
        out.rename(retired / "bundle")
        staging.rename(out)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        staging.rename(out)
