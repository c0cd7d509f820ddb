"""The witness's decision on an ``add-checkpoint`` request (c2sp.org/tlog-witness), without any I/O.

The request names the size the submitter believes the witness last cosigned (``old``), a consistency proof from
that size to the new checkpoint, and the checkpoint signed by the log. The witness cosigns only a checkpoint that
(1) comes from a log it is configured for (404 otherwise), (2) carries a valid signature of one of that log's keys
(403), (3) starts from exactly the size it last cosigned (409, answering its size), and (4) extends what it last
cosigned, proven by the consistency proof (422). A rewritten history re-signed with the log's own key fails (4):
the witness remembers the root it cosigned, and no proof leads from it to a tree that changed it.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from ig_evidence.domain.merkle import EMPTY_ROOT, ProofError, verify_consistency
from ig_evidence.domain.note import Checkpoint, NoteError, open_checkpoint, parse_checkpoint_body, parse_verifier_key

MAX_PROOF_LINES = 63
MAX_REQUEST_BYTES = 64 * 1024


class WitnessRefusal(Exception):
    """Why a checkpoint is not cosigned, as the HTTP status tlog-witness prescribes for it."""

    def __init__(self, status: int, detail: str, *, latest_size: int | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.latest_size = latest_size  # for 409: the size the witness last cosigned


@dataclass(frozen=True)
class AddCheckpoint:
    old_size: int
    proof: tuple[bytes, ...]
    note: str  # the signed checkpoint, as submitted


@dataclass(frozen=True)
class WitnessedLog:
    """A log the witness is configured for: its origin and the note verifier keys of its checkpoint keys (after a
    rotation, the old and the new)."""

    origin: str
    verifier_keys: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.verifier_keys:
            raise ValueError(f"log {self.origin}: at least one verifier key is needed")
        for key in self.verifier_keys:
            parse_verifier_key(key)  # raises NoteError naming what is wrong


@dataclass(frozen=True)
class TreeHead:
    """What the witness last cosigned for a log."""

    size: int
    root: bytes


def origin_hash(origin: str) -> str:
    return hashlib.sha256(origin.encode()).hexdigest()


def _bad_request(detail: str) -> WitnessRefusal:
    return WitnessRefusal(400, detail)


def parse_add_checkpoint(body: bytes) -> AddCheckpoint:
    """Parse the request body; a malformed one is refused with 400 naming what is wrong."""
    if len(body) > MAX_REQUEST_BYTES:
        raise _bad_request(f"request body over {MAX_REQUEST_BYTES} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _bad_request("request body is not UTF-8") from error
    first, newline, rest = text.partition("\n")
    if not newline or not first.startswith("old "):
        raise _bad_request("first line must be 'old <size>'")
    size_text = first[len("old "):]
    if not size_text.isascii() or not size_text.isdigit() or (size_text != "0" and size_text.startswith("0")):
        raise _bad_request(f"old size {size_text!r} is not a decimal without leading zeroes")
    proof: list[bytes] = []
    while True:
        line, newline, rest = rest.partition("\n")
        if not newline:
            raise _bad_request("no empty line between the consistency proof and the checkpoint")
        if line == "":
            break
        if len(proof) == MAX_PROOF_LINES:
            raise _bad_request(f"more than {MAX_PROOF_LINES} consistency proof lines")
        try:
            digest = base64.b64decode(line, validate=True)
        except ValueError as error:
            raise _bad_request(f"consistency proof line {len(proof) + 1} is not base64") from error
        if len(digest) != 32:
            raise _bad_request(f"consistency proof line {len(proof) + 1} is not a 32-byte hash")
        proof.append(digest)
    if not rest:
        raise _bad_request("no checkpoint after the consistency proof")
    return AddCheckpoint(int(size_text), tuple(proof), rest)


def encode_add_checkpoint(old_size: int, proof: Sequence[bytes], note: str) -> bytes:
    """The request body a log sends (the inverse of ``parse_add_checkpoint``)."""
    lines = [f"old {old_size}\n", *(base64.b64encode(h).decode() + "\n" for h in proof), "\n"]
    return ("".join(lines) + note).encode()


def checkpoint_body(note: str) -> str:
    body, separator, _ = note.partition("\n\n")
    if not separator:
        raise _bad_request("checkpoint has no signature block")
    return body + "\n"


def decide(request: AddCheckpoint, logs: Sequence[WitnessedLog], latest: TreeHead | None) -> Checkpoint:
    """The checkpoint to cosign, or WitnessRefusal. ``latest`` is what the witness last cosigned for the request's
    origin (None: never). The caller must persist the result only if ``latest`` is still current (compare and
    swap): a concurrent request may have moved it."""
    body = checkpoint_body(request.note)
    try:
        claimed = parse_checkpoint_body(body)
    except NoteError as error:
        raise _bad_request(f"checkpoint: {error}") from error
    log = next((entry for entry in logs if entry.origin == claimed.origin), None)
    if log is None:
        raise WitnessRefusal(404, f"unknown log origin {claimed.origin!r}")
    checkpoint = _verified_by_log(request.note, log)
    if request.old_size > checkpoint.tree_size:
        raise _bad_request(f"old size {request.old_size} is larger than the checkpoint size {checkpoint.tree_size}")
    current = latest or TreeHead(0, EMPTY_ROOT)
    if request.old_size != current.size:
        raise WitnessRefusal(409, f"old size {request.old_size} is not the size last cosigned ({current.size})",
                             latest_size=current.size)
    if checkpoint.tree_size == 0 and checkpoint.root_hash != EMPTY_ROOT:
        raise WitnessRefusal(422, "a checkpoint of size 0 must have the empty tree's root")
    if request.old_size == 0:
        if request.proof:
            raise WitnessRefusal(422, "the consistency proof from size 0 must be empty")
        return checkpoint
    try:
        verify_consistency(current.size, checkpoint.tree_size, current.root, checkpoint.root_hash, request.proof)
    except ProofError as error:
        raise WitnessRefusal(422, f"checkpoint is not consistent with the cosigned size {current.size}: {error}"
                             ) from error
    return checkpoint


def _verified_by_log(note: str, log: WitnessedLog) -> Checkpoint:
    reasons = []
    for key in log.verifier_keys:
        try:
            checkpoint = open_checkpoint(note, key)
        except NoteError as error:
            reasons.append(str(error))
            continue
        if checkpoint.origin != log.origin:
            reasons.append(f"origin {checkpoint.origin!r} is not {log.origin!r}")
            continue
        return checkpoint
    raise WitnessRefusal(403, f"no valid signature of a key of log {log.origin}: {'; '.join(reasons)}")
