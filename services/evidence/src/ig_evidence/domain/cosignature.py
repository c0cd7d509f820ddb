"""Witness cosignatures on checkpoints (c2sp.org/tlog-cosignature, the Ed25519 ``cosignature/v1`` type).

A cosignature is one more signed-note signature line on a checkpoint: ``— <witness name> base64(key id ||
timestamp || Ed25519 signature)``. The key id is SHA-256(name || "\\n" || 0x04 || public key)[:4], the timestamp a
big-endian u64 of POSIX seconds, and what is signed is ``cosignature/v1\\ntime <t>\\n`` followed by the whole
checkpoint body. Unlike the log's own signature it is not deterministic (it carries the time), which is why
cosignatures travel beside a bundle's anchored checkpoint, never inside it.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ig_evidence.domain.note import SIGNATURE_PREFIX, NoteError

COSIGNATURE_ALGORITHM = b"\x04"
HEADER = "cosignature/v1\n"
_MAX_TIMESTAMP = (1 << 63) - 1


@dataclass(frozen=True)
class Cosigner:
    """A witness as a verifier knows it: its name and Ed25519 public key."""

    name: str
    public_key: Ed25519PublicKey

    @property
    def key_id(self) -> bytes:
        return cosigner_key_id(self.name, self.public_key)

    @property
    def verifier_key(self) -> str:
        raw = self.public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        return f"{self.name}+{self.key_id.hex()}+{base64.b64encode(COSIGNATURE_ALGORITHM + raw).decode()}"


@dataclass(frozen=True)
class Cosignature:
    """A cosignature line that verified: who signed and when (POSIX seconds)."""

    witness: str
    timestamp: int
    line: str  # the signature line as it appears in the note, with its newline


def cosigner_key_id(name: str, public_key: Ed25519PublicKey) -> bytes:
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(name.encode() + b"\n" + COSIGNATURE_ALGORITHM + raw).digest()[:4]


def parse_cosigner_key(text: str) -> Cosigner:
    """A ``name+hash+base64(0x04 || key)`` verifier key, as ``Cosigner.verifier_key`` writes it."""
    try:
        name, hash_hex, encoded = text.strip().split("+", 2)
        raw = base64.b64decode(encoded, validate=True)
    except ValueError as error:
        raise NoteError(f"witness key is not name+hash+base64: {error}") from error
    if not name or any(c.isspace() for c in name):
        raise NoteError("witness key name is empty or has spaces")
    if raw[:1] != COSIGNATURE_ALGORITHM or len(raw) != 33:
        raise NoteError("witness key is not an Ed25519 cosignature/v1 key (type 0x04)")
    cosigner = Cosigner(name, Ed25519PublicKey.from_public_bytes(raw[1:]))
    if cosigner.key_id.hex() != hash_hex.lower():
        raise NoteError("witness key hash does not match its name and key")
    return cosigner


def signed_message(checkpoint_body: str, timestamp: int) -> bytes:
    return f"{HEADER}time {timestamp}\n{checkpoint_body}".encode()


def cosign(checkpoint_body: str, name: str, key: Ed25519PrivateKey, timestamp: int) -> str:
    """The cosignature line (with its newline) of ``name``'s ``key`` on ``checkpoint_body`` at ``timestamp``."""
    if not 0 < timestamp <= _MAX_TIMESTAMP:
        raise ValueError(f"cosignature timestamp {timestamp} out of range")
    signature = key.sign(signed_message(checkpoint_body, timestamp))
    raw = cosigner_key_id(name, key.public_key()) + struct.pack(">Q", timestamp) + signature
    return f"{SIGNATURE_PREFIX}{name} {base64.b64encode(raw).decode()}\n"


def split_note(note_text: str) -> tuple[str, list[str]]:
    """The note's body (with its final newline) and its signature lines (each with its newline)."""
    body, separator, signatures = note_text.partition("\n\n")
    if not separator:
        raise NoteError("note has no signature block")
    lines = signatures.splitlines(keepends=True)
    for line in lines:
        if not line.startswith(SIGNATURE_PREFIX) or not line.endswith("\n"):
            raise NoteError(f"malformed signature line {line!r}")
    return body + "\n", lines


def with_cosignatures(note_text: str, lines: Iterable[str]) -> str:
    """``note_text`` with the cosignature ``lines`` appended to its signatures (each once)."""
    _, present = split_note(note_text)
    added = [line if line.endswith("\n") else line + "\n" for line in lines]
    return note_text + "".join(line for line in dict.fromkeys(added) if line not in present)


def verified_cosignatures(note_text: str, cosigners: Sequence[Cosigner]) -> list[Cosignature]:
    """The cosignatures on ``note_text`` by ``cosigners``, one per witness; lines of unknown keys are ignored (as
    signed-note says), but a line whose name and key id match a known witness must verify or the note is refused."""
    body, lines = split_note(note_text)
    known = {(c.name, c.key_id): c for c in cosigners}
    found: dict[str, Cosignature] = {}
    for line in lines:
        name, _, encoded = line[len(SIGNATURE_PREFIX):].rstrip("\n").partition(" ")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except ValueError as error:
            raise NoteError(f"signature of {name} is not base64") from error
        cosigner = known.get((name, raw[:4]))
        if cosigner is None:
            continue
        if len(raw) != 4 + 8 + 64:
            raise NoteError(f"cosignature of {name} has {len(raw)} bytes, not 76")
        (timestamp,) = struct.unpack(">Q", raw[4:12])
        try:
            cosigner.public_key.verify(raw[12:], signed_message(body, timestamp))
        except InvalidSignature as error:
            raise NoteError(f"cosignature of witness {name} does not verify") from error
        found.setdefault(name, Cosignature(name, timestamp, line))
    return list(found.values())


def require_cosignatures(note_text: str, cosigners: Sequence[Cosigner], minimum: int) -> list[Cosignature]:
    """The valid cosignatures, at least ``minimum`` distinct witnesses' of ``cosigners``, or NoteError saying how
    many were found and whose keys were asked for."""
    found = verified_cosignatures(note_text, cosigners)
    if len(found) < minimum:
        wanted = ", ".join(sorted(c.name for c in cosigners)) or "none given"
        raise NoteError(f"checkpoint has {len(found)} valid witness cosignature(s), {minimum} required "
                        f"(witness keys: {wanted})")
    return found
