"""The ledger section of a manifest and its offline verification.

The ledger entry's payload is the canonical manifest core, so the chain covers exactly what the release claims;
the inclusion proof ties that entry to a signed checkpoint, which anyone can check with the log's verifier key.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ig_evidence.domain import merkle, note
from ig_evidence.domain.chain import EntryFields, entry_hash, sha256_hex


class AnchorError(ValueError):
    """The manifest's ledger anchor does not verify (the message says which step)."""


def ledger_section(*, entry: dict[str, Any], checkpoint_note: str, verifier_key: str, leaf_index: int,
                   tree_size: int, proof_hashes: list[str]) -> dict[str, Any]:
    checkpoint = note.open_checkpoint(checkpoint_note, verifier_key)
    return {
        "entry": entry,
        "checkpoint": {"origin": checkpoint.origin, "treeSize": checkpoint.tree_size,
                       "rootHash": checkpoint.root_hash.hex(), "note": checkpoint_note},
        "verifierKey": verifier_key,
        "inclusionProof": {"leafIndex": leaf_index, "treeSize": tree_size, "hashes": proof_hashes},
    }


def verify_anchor(core_bytes: bytes, ledger: dict[str, Any], pinned_verifier_key: str | None = None) -> int:
    """Checks payload, entry hash, checkpoint signature and inclusion; returns the entry's seq."""
    try:
        entry, proof = ledger["entry"], ledger["inclusionProof"]
        verifier = ledger["verifierKey"]
        fields = EntryFields(seq=int(entry["seq"]), ts=datetime.fromisoformat(entry["ts"].replace("Z", "+00:00")),
                             kind=str(entry["kind"]), subject=str(entry["subject"]),
                             payload_sha256=str(entry["payloadSha256"]), prev_hash=str(entry["prevHash"]))
        hashes = [bytes.fromhex(h) for h in proof["hashes"]]
        leaf_index, tree_size = int(proof["leafIndex"]), int(proof["treeSize"])
    except (KeyError, TypeError, ValueError) as error:
        raise AnchorError(f"ledger section is malformed: {error!r}") from error
    if pinned_verifier_key is not None and verifier != pinned_verifier_key:
        raise AnchorError("ledger checkpoint is signed by a different key than the pinned one")
    if fields.payload_sha256 != sha256_hex(core_bytes):
        raise AnchorError("ledger entry payload does not match this manifest's content")
    if entry_hash(fields) != entry.get("entryHash"):
        raise AnchorError(f"ledger entry {fields.seq}: entry hash does not match its fields")
    if leaf_index != fields.seq - 1:
        raise AnchorError(f"inclusion proof is for leaf {leaf_index}, not entry {fields.seq}")
    try:
        checkpoint = note.open_checkpoint(ledger["checkpoint"]["note"], verifier)
    except (note.NoteError, KeyError, TypeError) as error:
        raise AnchorError(f"ledger checkpoint: {error}") from error
    if checkpoint.tree_size != tree_size:
        raise AnchorError("inclusion proof and checkpoint disagree on the tree size")
    try:
        merkle.verify_inclusion(leaf_index, tree_size, merkle.leaf_hash(bytes.fromhex(entry["entryHash"])), hashes,
                                checkpoint.root_hash)
    except merkle.ProofError as error:
        raise AnchorError(str(error)) from error
    return fields.seq
