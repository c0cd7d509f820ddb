"""C2SP signed notes and transparency-log checkpoints (c2sp.org/signed-note, c2sp.org/tlog-checkpoint).

A checkpoint body is three lines: origin, tree size, base64 root hash. Signatures are Ed25519 (note algorithm
0x01), which is deterministic, so the checkpoint of a given tree size is byte-identical every time it is signed;
that is what lets two evidence builds anchored in the same ledger entry come out byte-identical.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ED25519_ALGORITHM = b"\x01"
SIGNATURE_PREFIX = "\u2014 "  # an em dash and a space start each signature line


class NoteError(ValueError):
    """A note or checkpoint is malformed or its signature does not verify."""


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    tree_size: int
    root_hash: bytes

    def body(self) -> str:
        return f"{self.origin}\n{self.tree_size}\n{base64.b64encode(self.root_hash).decode()}\n"


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_hash(name: str, public_key: Ed25519PublicKey) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + ED25519_ALGORITHM + _raw_public(public_key)).digest()[:4]


def verifier_key(name: str, public_key: Ed25519PublicKey) -> str:
    """The ``name+hash+base64`` verifier key string of golang.org/x/mod/sumdb/note."""
    encoded = base64.b64encode(ED25519_ALGORITHM + _raw_public(public_key)).decode()
    return f"{name}+{key_hash(name, public_key).hex()}+{encoded}"


def parse_verifier_key(text: str) -> tuple[str, Ed25519PublicKey]:
    try:
        name, hash_hex, encoded = text.strip().split("+", 2)
        raw = base64.b64decode(encoded, validate=True)
    except ValueError as error:
        raise NoteError(f"verifier key is not name+hash+base64: {error}") from error
    if raw[:1] != ED25519_ALGORITHM or len(raw) != 33:
        raise NoteError("verifier key is not an Ed25519 note key")
    public_key = Ed25519PublicKey.from_public_bytes(raw[1:])
    if key_hash(name, public_key).hex() != hash_hex:
        raise NoteError("verifier key hash does not match its name and key")
    return name, public_key


def sign_checkpoint(checkpoint: Checkpoint, name: str, private_key: Ed25519PrivateKey) -> str:
    body = checkpoint.body()
    signature = key_hash(name, private_key.public_key()) + private_key.sign(body.encode())
    return f"{body}\n{SIGNATURE_PREFIX}{name} {base64.b64encode(signature).decode()}\n"


def open_checkpoint(note: str, verifier: str) -> Checkpoint:
    """Verify ``note`` with ``verifier`` and parse its checkpoint body; raises NoteError on any mismatch."""
    name, public_key = parse_verifier_key(verifier)
    body, separator, signatures = note.partition("\n\n")
    if not separator:
        raise NoteError("note has no signature block")
    body += "\n"
    wanted_hash = key_hash(name, public_key)
    for line in signatures.splitlines():
        if not line.startswith(SIGNATURE_PREFIX):
            raise NoteError(f"malformed signature line {line!r}")
        signer, _, encoded = line[len(SIGNATURE_PREFIX):].partition(" ")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except ValueError as error:
            raise NoteError(f"signature of {signer} is not base64") from error
        if signer != name or raw[:4] != wanted_hash:
            continue
        try:
            public_key.verify(raw[4:], body.encode())
        except InvalidSignature as error:
            raise NoteError(f"checkpoint signature of {name} does not verify") from error
        return parse_checkpoint_body(body)
    raise NoteError(f"checkpoint carries no signature by {name}")


def parse_checkpoint_body(body: str) -> Checkpoint:
    lines = body.split("\n")
    if len(lines) < 4 or lines[-1] != "":
        raise NoteError("checkpoint body needs origin, size and root hash lines")
    origin, size_text, root_text = lines[0], lines[1], lines[2]
    if not size_text.isdigit():
        raise NoteError(f"checkpoint size {size_text!r} is not a number")
    try:
        root = base64.b64decode(root_text, validate=True)
    except ValueError as error:
        raise NoteError("checkpoint root hash is not base64") from error
    if len(root) != 32:
        raise NoteError("checkpoint root hash is not 32 bytes")
    return Checkpoint(origin=origin, tree_size=int(size_text), root_hash=root)
