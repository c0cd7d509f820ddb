"""Writing a verify kit (the evidence service, for the portal) and verifying one offline (``ig-evidence verify``).

The kit's layout and its ledger checks are domain/verify_kit.py's; the bundle inside is verified exactly as
``ig-evidence verify`` verifies any bundle, against the signer key the kit carries, which must hash to the key id
the kit names (and to ``--key-id``, the id the portal shows, when the auditor pins it). A keyless signer's bundle is
verified with sigstore-python against the identity policy and the trusted root: the kit's, or the ones the auditor
pins (``--certificate-oidc-issuer`` / ``--certificate-identity-regexp``, ``--trusted-root``), which take their place.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ig_evidence.bundle.keyless import IdentityPolicy, KeylessVerifier
from ig_evidence.bundle.verify import (
    METADATA_LIMIT,
    TooLarge,
    Verification,
    read_capped,
    verify_bundle,
    verify_keyless_bundle,
)
from ig_evidence.domain import manifest as mf
from ig_evidence.domain import note
from ig_evidence.domain.cosignature import Cosigner, require_cosignatures
from ig_evidence.domain.provenance import Subject, unattested
from ig_evidence.domain.trusted_signers import key_id
from ig_evidence.domain.verify_kit import (
    CHECKPOINT_FILE,
    INDEX_FILE,
    SIGNER_KEY_FILE,
    TRUSTED_ROOT_FILE,
    KitError,
    KitIndex,
    check_anchor_extends_to_head,
    check_registration,
    index_document,
    parse_index,
)

COPY_CHUNK = 1 << 20


def kit_file_name(release: str) -> str:
    return f"evidence-kit-{release}.tar"


class _Hashing:
    """A file object that hashes what goes through it: the kit's SHA-256 without reading the kit again."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return self._out.write(data)

    def tell(self) -> int:
        return self._out.tell()


def write_kit(out: IO[bytes], archive: Path, index: KitIndex, signer_files: dict[str, bytes],
              checkpoint_note: str) -> str:
    """The kit as an uncompressed tar (the bundle inside is compressed already), members in a fixed order; returns
    its SHA-256 (hex). ``signer_files``: the pinned key (``signer.pub``) or the keyless trusted root."""
    hashing = _Hashing(out)
    with tarfile.open(fileobj=hashing, mode="w", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
        small = {INDEX_FILE: json.dumps(index_document(index), indent=2, sort_keys=True).encode() + b"\n",
                 **signer_files, CHECKPOINT_FILE: checkpoint_note.encode()}
        for name, data in small.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo(index.bundle_file)
        info.size, info.mode = archive.stat().st_size, 0o644
        with open(archive, "rb") as handle:
            tar.addfile(info, handle)
    return hashing.digest.hexdigest()


def file_chunks(path: Path, size: int = COPY_CHUNK) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        while chunk := handle.read(size):
            yield chunk


def is_kit(path: Path) -> bool:
    if not path.is_file():
        return False
    try:
        with tarfile.open(path, "r:") as tar:
            first = tar.next()
            return first is not None and first.name == INDEX_FILE
    except tarfile.TarError:
        return False


@dataclass
class KitVerification:
    problems: list[str] = field(default_factory=list)
    release: str = ""
    tenant: str = ""
    signer: str = ""
    artifacts_checked: int = 0
    head_size: int = 0
    registration_seq: int = 0
    cosigned_by: list[str] = field(default_factory=list)
    signer_pinned: bool = False  # by the auditor (--key-id, --key, or a keyless identity and trusted root)
    # What the bundle's verified provenance attests beyond its artifacts (the release's images): name -> sha256.
    shipped: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def require_subjects(self, required: Iterable[Subject]) -> None:
        self.problems.extend(unattested(self.shipped, required))


def _read_kit(kit: Path, scratch: Path) -> tuple[dict[str, bytes], Path | None]:
    """The kit's small files (capped) and where its bundle was copied to."""
    small: dict[str, bytes] = {}
    bundle: Path | None = None
    with tarfile.open(kit, "r:") as tar:
        for member in tar:
            handle = tar.extractfile(member) if member.isreg() else None
            if handle is None:
                continue
            if member.name in (INDEX_FILE, SIGNER_KEY_FILE, TRUSTED_ROOT_FILE, CHECKPOINT_FILE):
                small[member.name] = read_capped(handle, member.name, METADATA_LIMIT)
            elif "/" not in member.name and member.name.endswith((".tar.gz", ".tar")):
                bundle = scratch / member.name
                with open(bundle, "wb") as out:
                    while chunk := handle.read(COPY_CHUNK):
                        out.write(chunk)
    return small, bundle


def _signer_key(pem: bytes | None) -> ec.EllipticCurvePublicKey:
    if not pem:
        raise KitError(f"{SIGNER_KEY_FILE}: missing from the kit")
    try:
        loaded = serialization.load_pem_public_key(pem)
    except ValueError as error:
        raise KitError(f"{SIGNER_KEY_FILE}: not a PEM public key ({error})") from error
    if not isinstance(loaded, ec.EllipticCurvePublicKey):
        raise KitError(f"{SIGNER_KEY_FILE}: not an ECDSA key")
    return loaded


@dataclass(frozen=True)
class KeylessPin:
    """What the auditor pins for a keyless kit; each part left out is taken from the kit."""

    identity: IdentityPolicy | None = None
    trusted_root: Path | None = None


def verify_kit(kit: Path, *, expected_key_id: str | None = None, pinned_ledger_key: str | None = None,
               witnesses: tuple[Cosigner, ...] = (), min_witnesses: int = 0,
               keyless: KeylessPin = KeylessPin()) -> KitVerification:
    """``min_witnesses``: the head checkpoint must carry that many valid cosignatures by ``witnesses``."""
    result = KitVerification()
    with tempfile.TemporaryDirectory(prefix="ig-kit-") as scratch:
        try:
            small, bundle = _read_kit(kit, Path(scratch))
            index = parse_index(json.loads(small.get(INDEX_FILE, b"null")))
        except (tarfile.TarError, TooLarge, KitError, ValueError) as error:
            result.problems.append(f"{kit}: {error}")
            return result
        result.release, result.tenant = index.release, index.tenant
        result.signer = f"{index.signer_name} (key id {index.signer_key_id})"
        try:
            head, registered = _check_ledger(index, small, bundle, pinned_ledger_key, result)
            if index.signer_identity is None:
                checked = _check_key_signer(index, small, registered, expected_key_id, keyless, result)
            else:
                checked = _check_keyless_signer(index, small, registered, expected_key_id, keyless, Path(scratch),
                                                result)
            result.problems.extend(checked.problems)
            result.artifacts_checked = checked.artifacts_checked
            result.shipped = checked.shipped
            if checked.manifest is not None:
                _check_manifest(index, registered, checked.manifest, head)
            if min_witnesses:
                _check_witnesses(small, witnesses, min_witnesses, result)
        except KitError as error:
            result.problems.append(str(error))
    return result


def _check_ledger(index: KitIndex, small: dict[str, bytes], bundle: Path | None, pinned_ledger_key: str | None,
                  result: KitVerification) -> tuple[note.Checkpoint, Path]:
    """The head checkpoint's signature, the registration entry in it, and the bundle being the registered one."""
    verifier = pinned_ledger_key or index.ledger_verifier_key
    if verifier != index.ledger_verifier_key:
        raise KitError("ledger: the kit's checkpoint key is not the pinned one")
    try:
        head = note.open_checkpoint(small.get(CHECKPOINT_FILE, b"").decode(), verifier)
    except (note.NoteError, UnicodeDecodeError) as error:
        raise KitError(f"{CHECKPOINT_FILE}: {error}") from error
    result.head_size = head.tree_size
    check_registration(index, head)
    result.registration_seq = index.registration.fields.seq
    if bundle is None or bundle.name != index.bundle_file:
        raise KitError(f"{index.bundle_file}: the bundle is missing from the kit")
    if sha256_of_file(bundle) != index.archive_sha256:
        raise KitError(f"{index.bundle_file}: its SHA-256 is not the registered archive's")
    return head, bundle


def _check_key_signer(index: KitIndex, small: dict[str, bytes], bundle: Path, expected_key_id: str | None,
                      keyless: KeylessPin, result: KitVerification) -> Verification:
    if keyless.identity is not None or keyless.trusted_root is not None:
        raise KitError(f"signer: {index.signer_name} is a pinned key (key id {index.signer_key_id}), not a keyless "
                       "identity: pin it with --key-id or --key")
    signer = _signer_key(small.get(SIGNER_KEY_FILE))
    if key_id(signer) != index.signer_key_id:
        raise KitError(f"{SIGNER_KEY_FILE}: its key id is {key_id(signer)}, the kit names {index.signer_key_id}")
    if expected_key_id is not None and expected_key_id != index.signer_key_id:
        raise KitError(f"signer: key id {index.signer_key_id}, not the expected {expected_key_id}")
    result.signer_pinned = expected_key_id is not None
    # The anchor's own checkpoint may be signed by a key since rotated out: what ties it to the head is the
    # consistency of its root with the head's (_check_manifest), not its signature.
    return verify_bundle(bundle, signer)


def _check_keyless_signer(index: KitIndex, small: dict[str, bytes], bundle: Path, expected_key_id: str | None,
                          keyless: KeylessPin, scratch: Path, result: KitVerification) -> Verification:
    assert index.signer_identity is not None
    if expected_key_id is not None:
        raise KitError(f"signer: {index.signer_name} signs keylessly (no key id); pin it with "
                       "--certificate-oidc-issuer, --certificate-identity-regexp and --trusted-root")
    policy = keyless.identity or IdentityPolicy(index.signer_identity.issuer, index.signer_identity.subject_regexp)
    root = keyless.trusted_root
    if root is None:
        if TRUSTED_ROOT_FILE not in small:
            raise KitError(f"{TRUSTED_ROOT_FILE}: missing from the kit")
        root = scratch / TRUSTED_ROOT_FILE
        root.write_bytes(small[TRUSTED_ROOT_FILE])
    try:
        verifier = KeylessVerifier.from_file(root)
    except ValueError as error:
        raise KitError(f"{TRUSTED_ROOT_FILE}: {error}") from error
    checked, signer = verify_keyless_bundle(bundle, verifier, policy)
    result.signer_pinned = keyless.identity is not None and keyless.trusted_root is not None
    if signer is not None:
        result.signer = (f"{index.signer_name}, keyless: {signer.subject} from {signer.issuer} (subject ~ "
                         f"{policy.subject_regexp})")
    return checked


def _check_witnesses(small: dict[str, bytes], witnesses: tuple[Cosigner, ...], minimum: int,
                     result: KitVerification) -> None:
    """The head the kit proves everything against must be one at least ``minimum`` pinned witnesses cosigned
    (its log signature was checked with the rest)."""
    try:
        found = require_cosignatures(small.get(CHECKPOINT_FILE, b"").decode(), witnesses, minimum)
    except (note.NoteError, UnicodeDecodeError) as error:
        raise KitError(f"{CHECKPOINT_FILE}: witnesses: {error}") from error
    result.cosigned_by = sorted(c.witness for c in found)


def _check_manifest(index: KitIndex, bundle: Path, manifest: dict[str, Any], head: note.Checkpoint) -> None:
    with tarfile.open(bundle, "r:*") as tar:
        handle = tar.extractfile(mf.MANIFEST_FILE)
        manifest_bytes = read_capped(handle, mf.MANIFEST_FILE) if handle is not None else b""
    if hashlib.sha256(manifest_bytes).hexdigest() != index.manifest_sha256:
        raise KitError(f"{mf.MANIFEST_FILE}: its SHA-256 is not the registered manifest's")
    anchor = manifest.get("ledger")
    if anchor is None:
        if index.anchored_size:
            raise KitError("ledger: the kit names an anchor the manifest does not have")
        return
    try:
        size, root = int(anchor["checkpoint"]["treeSize"]), bytes.fromhex(anchor["checkpoint"]["rootHash"])
    except (KeyError, TypeError, ValueError) as error:
        raise KitError(f"ledger: the manifest's anchor checkpoint is malformed ({error!r})") from error
    if size != index.anchored_size:
        raise KitError(f"ledger: the manifest is anchored at size {size}, the kit proves size {index.anchored_size}")
    check_anchor_extends_to_head(index, root, head)


def sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(COPY_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
