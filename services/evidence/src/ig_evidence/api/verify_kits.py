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
from ig_evidence.bundle.kit import write_kit
from ig_evidence.domain import manifest as mf
from ig_evidence.domain.trusted_signers import TrustedSigners
from ig_evidence.domain.verify_kit import KitIndex, ProvedEntry
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
                       signers: TrustedSigners, witnessing: Witnessing | None = None) -> AssembledKit:
    """The kit written to a temporary file, with its index, the head size it proves against and its SHA-256.
    With ``witnessing``, the head checkpoint carries the witnesses' cosignatures (``verify --witness-key``)."""
    if not bundle.signer_key_id and bundle.signer_name:
        raise KitUnavailable(f"{bundle.release!r} is signed keylessly ({bundle.signer_name}): verify kits carry a "
                             "pinned key, not yet an identity policy")
    pinned = signers.pinned_key(bundle.tenant, bundle.signer_key_id)
    if pinned is None:
        raise KitUnavailable(f"the signer of {bundle.release!r} ({bundle.signer_name or 'none recorded'}) is not "
                             f"pinned for tenant {bundle.tenant!r} any more")
    archive_sha256 = await bundles.archive_of(bundle)
    if archive_sha256 is None or not blobs.exists(archive_sha256):
        raise KitUnavailable(f"the bundle of {bundle.release!r} is not stored")
    archive = blobs.path_of(archive_sha256)
    files = await asyncio.to_thread(read_metadata_files, archive)
    anchor = json.loads(files[mf.MANIFEST_FILE]).get("ledger")
    anchored_size = int(anchor["checkpoint"]["treeSize"]) if anchor else 0
    head_size, _, head_note, _ = await ledger.checkpoint()
    if witnessing is not None:
        head_note = await witnessing.cosigned(head_size, head_note, wait=True)
    entry = await ledger.get(bundle.ledger_seq)
    _, inclusion, _, _ = await ledger.inclusion_proof(bundle.ledger_seq, head_size)
    consistency = await ledger.consistency_proof(anchored_size, head_size) if anchored_size else []
    index = KitIndex(release=bundle.release, tenant=bundle.tenant, manifest_sha256=bundle.manifest_sha256,
                     archive_sha256=archive_sha256, bundle_file=f"evidence-{bundle.release}.tar.gz",
                     signer_name=pinned.name, signer_key_id=pinned.key_id,
                     ledger_verifier_key=ledger.verifier_for(head_note) or ledger.signer.verifier_key,
                     registration=ProvedEntry(entry.fields, entry.entry_hash, entry.payload, tuple(inclusion)),
                     anchored_size=anchored_size, consistency=tuple(consistency))
    out, temp = blobs.temp_file()

    def write() -> str:
        with out:
            return write_kit(out, archive, index, pinned.pem, head_note)

    try:
        digest = await asyncio.to_thread(write)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return AssembledKit(temp, index, head_size, digest)

