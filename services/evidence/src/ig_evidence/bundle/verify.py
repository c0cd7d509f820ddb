"""``ig-evidence verify``: signature, every artifact's hash, completeness and the ledger anchor, all offline.

Accepts the bundle tarball, the ``--out`` directory of a build (tarball + top-level manifest), or an unpacked
bundle directory (``artifacts/`` beside ``manifest.json``). Each problem is reported with the artifact it is about.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import tarfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from ig_evidence.bundle.archive import CHUNK, is_safe_member
from ig_evidence.bundle.keyless import IdentityPolicy, KeylessRefused, KeylessSigner, KeylessVerifier
from ig_evidence.domain import manifest as mf
from ig_evidence.domain import note, signatures
from ig_evidence.domain.anchoring import AnchorError, verify_anchor
from ig_evidence.domain.contract import EvidenceContract, missing_items
from ig_evidence.domain.provenance import Subject, statement_subjects, unattested
from ig_evidence.domain.witnessed import WitnessedCheckpoint, WitnessedError, WitnessPolicy, verify_witnessed

PROVENANCE_PREFIX = f"{mf.ARTIFACTS_DIR}/provenance/"
KEEP_LIMIT = 64 << 20  # attestations are read whole to check their signature; anything bigger is only hashed
METADATA_FILES = (mf.MANIFEST_FILE, mf.SIGNATURE_FILE, mf.BUNDLE_FILE, "cosign.pub")
# The manifest, its signatures and the key are read whole: never more than this (a manifest of 10,000 artifacts is
# a few MiB).
METADATA_LIMIT = 16 << 20


class TooLarge(ValueError):
    pass


def read_capped(handle: Any, name: str, limit: int = METADATA_LIMIT) -> bytes:
    """All of ``handle``, refusing past ``limit`` bytes without reading further."""
    data = handle.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(f"{name}: larger than {limit} bytes (refused)")
    return bytes(data)


@dataclass
class Verification:
    problems: list[str] = field(default_factory=list)
    manifest: dict[str, Any] | None = None
    artifacts_checked: int = 0
    ledger_seq: int | None = None
    witnessed_size: int | None = None  # the cosigned head the anchor was checked against
    cosigned_by: list[str] = field(default_factory=list)
    # What the signed provenance attests beyond the bundle's artifacts (the release's images): name -> sha256.
    shipped: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def require_subjects(self, required: Iterable[Subject]) -> None:
        """Each of ``required`` (an image about to run, say) must be attested by the provenance, digest and all."""
        self.problems.extend(unattested(self.shipped, required))


@dataclass
class Contents:
    digests: dict[str, tuple[str, int]] = field(default_factory=dict)  # path -> (sha256, size)
    metadata: dict[str, bytes] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def _hash_stream(read: Iterator[bytes]) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    for chunk in read:
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def _chunks(handle: Any) -> Iterator[bytes]:
    while chunk := handle.read(CHUNK):
        yield chunk


def _read_archive(archive: Path) -> Contents:
    contents = Contents()
    current = "<archive header>"
    try:
        with tarfile.open(archive, "r|*") as tar:
            for member in tar:
                current = member.name
                if not is_safe_member(member):
                    contents.problems.append(f"{member.name}: not a plain file inside the bundle (refused)")
                    continue
                handle = tar.extractfile(member)
                assert handle is not None
                if member.name in METADATA_FILES:
                    try:
                        contents.metadata[member.name] = read_capped(handle, member.name)
                    except TooLarge as error:
                        contents.problems.append(str(error))
                elif member.name.startswith(PROVENANCE_PREFIX) and member.size <= KEEP_LIMIT:
                    data = handle.read()
                    contents.metadata[member.name] = data
                    contents.digests[member.name] = (hashlib.sha256(data).hexdigest(), len(data))
                else:
                    contents.digests[member.name] = _hash_stream(_chunks(handle))
    except (tarfile.TarError, zlib.error, EOFError, OSError) as error:
        contents.problems.append(f"{current}: bundle archive is corrupt while reading it ({error})")
    return contents


def _read_directory(root: Path) -> Contents:
    contents = Contents()
    for name in METADATA_FILES:
        if (root / name).is_file():
            with open(root / name, "rb") as handle:
                try:
                    contents.metadata[name] = read_capped(handle, name)
                except TooLarge as error:
                    contents.problems.append(str(error))
    for path in sorted((root / mf.ARTIFACTS_DIR).rglob("*")):
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            contents.problems.append(f"{path.relative_to(root)}: not a plain file (refused)")
        elif path.is_file():
            relative = str(path.relative_to(root))
            with open(path, "rb") as handle:
                contents.digests[relative] = _hash_stream(_chunks(handle))
            if relative.startswith(PROVENANCE_PREFIX) and path.stat().st_size <= KEEP_LIMIT:
                contents.metadata[relative] = path.read_bytes()
    return contents


def locate(bundle: Path) -> tuple[Contents, list[str]]:
    """Read the bundle wherever it is; the second value lists problems with the directory's own copies."""
    if bundle.is_file():
        return _read_archive(bundle), []
    if not bundle.is_dir():
        return Contents(problems=[f"{bundle}: no such bundle"]), []
    archives = sorted(bundle.glob("evidence-*.tar.gz")) + sorted(bundle.glob("evidence-*.tar"))
    if not archives:
        return _read_directory(bundle), []
    contents = _read_archive(archives[0])
    extra = []
    for name in (mf.MANIFEST_FILE, mf.SIGNATURE_FILE, mf.BUNDLE_FILE):
        beside = bundle / name
        inside = contents.metadata.get(name)
        if beside.is_file() and inside is not None and beside.read_bytes() != inside:
            extra.append(f"{name}: the copy beside the archive differs from the one inside it")
    return contents, extra


def verify_bundle(bundle: Path, public_key: ec.EllipticCurvePublicKey, *, contract: EvidenceContract | None = None,
                  pinned_ledger_key: str | None = None, allow_incomplete: bool = False,
                  witnesses: WitnessPolicy | None = None) -> Verification:
    contents, extra = locate(bundle)
    contents.problems.extend(extra)
    return check_contents(contents, public_key, contract=contract, pinned_ledger_key=pinned_ledger_key,
                          allow_incomplete=allow_incomplete, witnesses=witnesses)


def verify_keyless_bundle(bundle: Path, verifier: KeylessVerifier, policy: IdentityPolicy, *,
                          contract: EvidenceContract | None = None, pinned_ledger_key: str | None = None,
                          allow_incomplete: bool = False, witnesses: WitnessPolicy | None = None
                          ) -> tuple[Verification, KeylessSigner | None]:
    """``verify_bundle`` for a keyless bundle: its Sigstore bundle must satisfy ``policy`` under ``verifier``'s
    trusted root (offline), and every other check then runs against the signing certificate's key."""
    contents, extra = locate(bundle)
    contents.problems.extend(extra)
    try:
        signer = verifier.verify(contents.metadata.get(mf.BUNDLE_FILE, b""),
                                 contents.metadata.get(mf.MANIFEST_FILE, b""), policy)
    except KeylessRefused as error:
        return Verification(problems=[*contents.problems, f"{mf.BUNDLE_FILE}: {error}"]), None
    return check_contents(contents, signer.public_key, contract=contract, pinned_ledger_key=pinned_ledger_key,
                          allow_incomplete=allow_incomplete, witnesses=witnesses), signer


def check_contents(contents: Contents, public_key: ec.EllipticCurvePublicKey, *,
                   contract: EvidenceContract | None = None, pinned_ledger_key: str | None = None,
                   allow_incomplete: bool = False, witnesses: WitnessPolicy | None = None) -> Verification:
    """Every check of ``verify_bundle`` on a bundle already read (``locate``): the caller that must first pick the
    key from the bundle's metadata (the service, by its pinned signers) reads the archive once, not twice."""
    result = Verification(problems=list(contents.problems))
    manifest_bytes = contents.metadata.get(mf.MANIFEST_FILE)
    if manifest_bytes is None:
        result.problems.append(f"{mf.MANIFEST_FILE}: missing from the bundle")
        return result
    _check_signatures(contents, manifest_bytes, public_key, result)
    try:
        manifest = json.loads(manifest_bytes)
        records = mf.artifacts_of(manifest)
    except (ValueError, mf.ManifestError) as error:
        result.problems.append(f"{mf.MANIFEST_FILE}: {error}")
        return result
    result.manifest = manifest
    _check_artifacts(contents, records, result)
    _check_provenance(contents, records, public_key, result)
    _check_completeness(manifest, records, contract, allow_incomplete, result)
    if "ledger" in manifest:
        try:
            result.ledger_seq = verify_anchor(mf.canonical(mf.core_of(manifest)), manifest["ledger"],
                                              pinned_ledger_key)
        except AnchorError as error:
            result.problems.append(f"ledger anchor: {error}")
    if witnesses is not None and witnesses.minimum > 0:
        _check_witnesses(manifest, witnesses, pinned_ledger_key, result)
    return result


def _check_witnesses(manifest: dict[str, Any], policy: WitnessPolicy, pinned_ledger_key: str | None,
                     result: Verification) -> None:
    """The anchored checkpoint must be a prefix of a head at least ``policy.minimum`` pinned witnesses cosigned."""
    if "ledger" not in manifest:
        result.problems.append("witnesses: the bundle has no ledger anchor, so nothing a witness saw covers it")
        return
    if result.ledger_seq is None:
        return  # the anchor itself failed, and says why
    ledger = manifest["ledger"]
    anchored_note = str(ledger["checkpoint"]["note"])
    anchored = note.parse_checkpoint_body(anchored_note.partition("\n\n")[0] + "\n")
    witnessed = policy.witnessed or WitnessedCheckpoint(anchored_note, str(ledger["verifierKey"]))
    try:
        checked = verify_witnessed(anchored, witnessed, policy.cosigners, policy.minimum, pinned_ledger_key)
    except WitnessedError as error:
        hint = ("" if policy.witnessed is not None else
                " (a bundle's anchored checkpoint never carries cosignatures: pass --checkpoint with a cosigned "
                "head, `ig-evidence checkpoint` writes one)")
        result.problems.append(f"witnesses: {error}{hint}")
        return
    result.witnessed_size = checked.head.tree_size
    result.cosigned_by = sorted(c.witness for c in checked.cosignatures)


def _check_signatures(contents: Contents, manifest_bytes: bytes, public_key: ec.EllipticCurvePublicKey,
                      result: Verification) -> None:
    raw_signature = contents.metadata.get(mf.SIGNATURE_FILE)
    if raw_signature is None:
        result.problems.append(f"{mf.SIGNATURE_FILE}: missing from the bundle")
    else:
        try:
            signatures.verify(public_key, base64.b64decode(raw_signature.strip(), validate=True), manifest_bytes)
        except (signatures.SignatureError, binascii.Error) as error:
            result.problems.append(f"{mf.MANIFEST_FILE}: signature in {mf.SIGNATURE_FILE} fails ({error})")
    raw_bundle = contents.metadata.get(mf.BUNDLE_FILE)
    if raw_bundle is None:
        result.problems.append(f"{mf.BUNDLE_FILE}: missing from the bundle")
        return
    try:
        signatures.check_sigstore_bundle(json.loads(raw_bundle), public_key, manifest_bytes)
    except (ValueError, signatures.SignatureError) as error:
        result.problems.append(f"{mf.MANIFEST_FILE}: sigstore bundle {mf.BUNDLE_FILE} fails ({error})")


def _check_artifacts(contents: Contents, records: list[mf.ArtifactRecord], result: Verification) -> None:
    expected = {r.path: r for r in records}
    for path, record in sorted(expected.items()):
        found = contents.digests.get(path)
        if found is None:
            result.problems.append(f"artifact {record.name}: missing from the bundle ({path})")
        elif found != (record.sha256, record.size):
            result.problems.append(f"artifact {record.name}: sha256/size mismatch (manifest {record.sha256[:16]}…/"
                                   f"{record.size}, bundle {found[0][:16]}…/{found[1]})")
        else:
            result.artifacts_checked += 1
    for path in sorted(set(contents.digests) - set(expected)):
        result.problems.append(f"{path}: file in the bundle that the manifest does not list")


def _check_provenance(contents: Contents, records: list[mf.ArtifactRecord], public_key: ec.EllipticCurvePublicKey,
                      result: Verification) -> None:
    provenance = [r for r in records if r.type == "provenance"]
    if not provenance or provenance[0].path not in contents.digests:
        return
    statement_bytes = contents.metadata.get(provenance[0].path)
    if statement_bytes is None:
        return
    try:
        statement = json.loads(signatures.open_dsse_envelope(json.loads(statement_bytes), public_key))
    except (ValueError, signatures.SignatureError) as error:
        result.problems.append(f"artifact {provenance[0].name}: {error}")
        return
    subjects = statement_subjects(statement)
    for record in records:
        if record.type != "provenance" and subjects.get(record.name) != record.sha256:
            result.problems.append(f"artifact {record.name}: not covered by the provenance attestation")
    artifacts = {record.name for record in records}
    result.shipped = {name: digest for name, digest in sorted(subjects.items()) if name not in artifacts}


def _check_completeness(manifest: dict[str, Any], records: list[mf.ArtifactRecord], contract: EvidenceContract | None,
                        allow_incomplete: bool, result: Verification) -> None:
    missing = list(manifest.get("missing", []))
    if contract is not None:
        counts: dict[str, int] = {}
        for record in records:
            counts[record.type] = counts.get(record.type, 0) + 1
        missing = missing_items(contract, counts, anchored="ledger" in manifest)
        if contract.version != manifest.get("contract", {}).get("version"):
            result.problems.append(f"contract: bundle built against {manifest.get('contract')}, "
                                   f"checked against {contract.version}")
    if (missing or manifest.get("complete") is not True) and not allow_incomplete:
        result.problems.extend(f"incomplete: {m}" for m in missing or ["the manifest is marked incomplete"])
