"""Assembling a release's verify kit from what the service holds: the stored bundle, the pinned signer, the ledger.

Everything in a kit is proved against one head checkpoint, read first: the proofs are asked for at that size, so
appends made meanwhile change nothing.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path

from ig_evidence.bundle.ingest import read_metadata_files
from ig_evidence.bundle.keyless import KeylessVerifier
from ig_evidence.bundle.kit import write_kit
from ig_evidence.bundle.signer import identify_signer
from ig_evidence.domain import manifest as mf
from ig_evidence.domain.trusted_signers import SignerNotTrusted, TrustedSigners
from ig_evidence.domain.verify_kit import (
    SIGNER_KEY_FILE,
    TRUSTED_ROOT_FILE,
    KitIndex,
    ProvedEntry,
    SignerIdentity,
)
from ig_evidence.store.blobs import BlobStore
from ig_evidence.store.bundles import BundleRow, BundleStore
from ig_evidence.store.ledger import LedgerStore
from ig_evidence.store.witnessing import Witnessing


@dataclass(frozen=True)
class AssembledKit:
    path: Path  # a temporary file: the caller removes it
    index: KitIndex
    head_size: int  # the checkpoint size everything in it is proved against
    sha256: str


class KitUnavailable(ValueError):
    """No kit can be made for this bundle (the message says why)."""


async def assemble_kit(bundle: BundleRow, bundles: BundleStore, ledger: LedgerStore, blobs: BlobStore,
                       signers: TrustedSigners, witnessing: Witnessing | None = None,
                       keyless: KeylessVerifier | None = None) -> AssembledKit:
    """The kit written to a temporary file, with its index, the head size it proves against and its SHA-256.
    With ``witnessing``, the head checkpoint carries the witnesses' cosignatures (``verify --witness-key``)."""
    archive_sha256 = await bundles.archive_of(bundle)
    if archive_sha256 is None or not blobs.exists(archive_sha256):
        raise KitUnavailable(f"the bundle of {bundle.release!r} is not stored")
    archive = blobs.path_of(archive_sha256)
    files = await asyncio.to_thread(read_metadata_files, archive)
    if bundle.signer_key_id or not bundle.signer_name:
        pinned = signers.pinned_key(bundle.tenant, bundle.signer_key_id)
        if pinned is None:
            raise KitUnavailable(f"the signer of {bundle.release!r} ({bundle.signer_name or 'none recorded'}) is not "
                                 f"pinned for tenant {bundle.tenant!r} any more")
        signer_name, signer_key_id, identity = pinned.name, pinned.key_id, None
        signer_files = {SIGNER_KEY_FILE: pinned.pem}
    else:
        signer_name, identity, trusted_root = await asyncio.to_thread(_keyless_signer, bundle, files, signers,
                                                                      keyless)
        signer_key_id, signer_files = "", {TRUSTED_ROOT_FILE: trusted_root}
    anchor = json.loads(files[mf.MANIFEST_FILE]).get("ledger")
    anchored_size = int(anchor["checkpoint"]["treeSize"]) if anchor else 0
    head_size, _, head_note, _ = await ledger.checkpoint()
    if witnessing is not None:
        head_note = await witnessing.cosigned(head_size, head_note, wait=True)
    entry = await ledger.get(bundle.ledger_seq, tenant=bundle.tenant)
    _, inclusion, _, _ = await ledger.inclusion_proof(bundle.ledger_seq, head_size)
    consistency = await ledger.consistency_proof(anchored_size, head_size) if anchored_size else []
    index = KitIndex(release=bundle.release, tenant=bundle.tenant, manifest_sha256=bundle.manifest_sha256,
                     archive_sha256=archive_sha256, bundle_file=f"evidence-{bundle.release}.tar.gz",
                     signer_name=signer_name, signer_key_id=signer_key_id, signer_identity=identity,
                     ledger_verifier_key=ledger.verifier_for(head_note) or ledger.signer.verifier_key,
                     registration=ProvedEntry(entry.fields, entry.entry_hash, entry.payload, tuple(inclusion)),
                     anchored_size=anchored_size, consistency=tuple(consistency))
    out, temp = blobs.temp_file()

    def write() -> str:
        with out:
            return write_kit(out, archive, index, signer_files, head_note)

    try:
        digest = await asyncio.to_thread(write)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return AssembledKit(temp, index, head_size, digest)



def _keyless_signer(bundle: BundleRow, files: dict[str, bytes], signers: TrustedSigners,
                    keyless: KeylessVerifier | None) -> tuple[str, SignerIdentity, bytes]:
    """The keyless identity of the tenant the stored bundle's certificate satisfies today (checked again: a kit is
    not made for a signer the tenant no longer trusts), and the trusted root it was checked against."""
    if keyless is None or signers.keyless_trusted_root is None:
        raise KitUnavailable(f"{bundle.release!r} is signed keylessly ({bundle.signer_name}), and this service has "
                             "no keyless trusted root configured any more")
    try:
        signer = identify_signer(files, signers.of(bundle.tenant), bundle.tenant, keyless)
    except SignerNotTrusted as error:
        raise KitUnavailable(f"the signer of {bundle.release!r} is not trusted for tenant {bundle.tenant!r} any "
                             f"more: {error}") from error
    if signer.identity is None:
        raise KitUnavailable(f"{bundle.release!r} was registered as keyless and its bundle is signed by a key")
    return (signer.name, SignerIdentity(signer.identity.issuer, signer.identity.subject_regexp),
            Path(signers.keyless_trusted_root).read_bytes())
