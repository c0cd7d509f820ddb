"""A witnessed head checkpoint for offline verification, and the check that ties a bundle's anchor to it.

A bundle anchors its manifest in the checkpoint of the tree that ends with its own entry, signed by the log alone
(deterministic, so rebuilds stay byte-identical). Witness cosignatures carry a time, so they come separately, on a
later head: this file holds that cosigned head note, the log's verifier key, and consistency proofs from smaller
sizes (the anchored ones) to the head. A verifier that pins witness keys then knows the checkpoint its bundle is
anchored in is a prefix of a tree at least k independent witnesses saw, so a log that forked or rewrote history
after the build cannot show that bundle one history and the witnesses another.

The file (``ig.evidence.witnessed-checkpoint/v1``, JSON) is meant to be one part of a verify kit:

    {"schemaVersion": "ig.evidence.witnessed-checkpoint/v1", "verifierKey": "<log name+hash+base64>",
     "checkpoint": "<note text with the log's signature and the witnesses' cosignature lines>",
     "consistency": [{"fromSize": 42, "hashes": ["<hex>", ...]}, ...]}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ig_evidence.domain import merkle, note
from ig_evidence.domain.cosignature import Cosignature, Cosigner, require_cosignatures

SCHEMA_VERSION = "ig.evidence.witnessed-checkpoint/v1"


class WitnessedError(ValueError):
    """The witnessed checkpoint is malformed, insufficiently cosigned or not consistent with the anchor."""


@dataclass(frozen=True)
class WitnessedCheckpoint:
    checkpoint: str  # the head note, cosignature lines included
    verifier_key: str  # the log's
    consistency: dict[int, tuple[bytes, ...]] = field(default_factory=dict)  # from size -> proof to the head

    def to_document(self) -> dict[str, Any]:
        return {"schemaVersion": SCHEMA_VERSION, "verifierKey": self.verifier_key, "checkpoint": self.checkpoint,
                "consistency": [{"fromSize": size, "hashes": [h.hex() for h in proof]}
                                for size, proof in sorted(self.consistency.items())]}


def from_document(document: Any) -> WitnessedCheckpoint:
    try:
        if document["schemaVersion"] != SCHEMA_VERSION:
            raise WitnessedError(f"schemaVersion {document['schemaVersion']!r} is not {SCHEMA_VERSION}")
        proofs = {int(p["fromSize"]): tuple(bytes.fromhex(h) for h in p["hashes"])
                  for p in document.get("consistency", [])}
        return WitnessedCheckpoint(str(document["checkpoint"]), str(document["verifierKey"]), proofs)
    except (KeyError, TypeError, ValueError) as error:
        if isinstance(error, WitnessedError):
            raise
        raise WitnessedError(f"witnessed checkpoint is malformed: {error!r}") from error


@dataclass(frozen=True)
class WitnessPolicy:
    """What ``ig-evidence verify`` requires of witnesses: ``minimum`` valid cosignatures by ``cosigners`` on
    ``witnessed`` (None: on the bundle's own anchored checkpoint, which never carries any)."""

    cosigners: tuple[Cosigner, ...]
    minimum: int
    witnessed: WitnessedCheckpoint | None = None


@dataclass(frozen=True)
class WitnessedAnchor:
    head: note.Checkpoint
    cosignatures: tuple[Cosignature, ...]


def verify_witnessed(anchored: note.Checkpoint, witnessed: WitnessedCheckpoint, cosigners: Sequence[Cosigner],
                     minimum: int, pinned_log_key: str | None = None) -> WitnessedAnchor:
    """The head, if it is signed by the log, cosigned by at least ``minimum`` of ``cosigners``, and the
    ``anchored`` checkpoint is a prefix of it; WitnessedError naming the failed step otherwise."""
    log_key = pinned_log_key or witnessed.verifier_key
    if pinned_log_key is not None and witnessed.verifier_key != pinned_log_key:
        raise WitnessedError("the witnessed checkpoint is signed by a different log key than the pinned one")
    try:
        head = note.open_checkpoint(witnessed.checkpoint, log_key)
        found = require_cosignatures(witnessed.checkpoint, cosigners, minimum)
    except note.NoteError as error:
        raise WitnessedError(str(error)) from error
    if head.origin != anchored.origin:
        raise WitnessedError(f"the witnessed checkpoint is of log {head.origin!r}, the bundle's of {anchored.origin!r}")
    if anchored.tree_size > head.tree_size:
        raise WitnessedError(f"the witnessed checkpoint (size {head.tree_size}) is older than the bundle's anchor "
                             f"(size {anchored.tree_size})")
    proof = witnessed.consistency.get(anchored.tree_size, ())
    if anchored.tree_size < head.tree_size and anchored.tree_size not in witnessed.consistency:
        raise WitnessedError(f"no consistency proof from size {anchored.tree_size} to the witnessed size "
                             f"{head.tree_size}")
    try:
        merkle.verify_consistency(anchored.tree_size, head.tree_size, anchored.root_hash, head.root_hash, proof)
    except merkle.ProofError as error:
        raise WitnessedError(f"the bundle's checkpoint (size {anchored.tree_size}) is not a prefix of the "
                             f"witnessed one (size {head.tree_size}): {error}") from error
    return WitnessedAnchor(head, tuple(found))
