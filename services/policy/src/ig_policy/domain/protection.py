"""What protects a decision record: keyed pseudonyms for what the log shows, a sealed copy of the whole input.

Pseudonyms are HMAC-SHA256 under a secret pepper: equal values give equal pseudonyms (a log reader can still count
one subject's decisions), but without the pepper nobody can test a guess (a bare SHA-256 of ``tenant/id`` is
reversed by hashing every known user id).

The input is sealed with HPKE (RFC 9180, base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM, as
``cryptography``'s ``hpke.Suite`` implements it) to the replay key's public half: every record gets its own
ephemeral key, so the service, which holds only the public key, cannot open any record it wrote, and only the
holder of the private key (the replay tool) can. The HPKE ``info`` names the decision, so a sealed input moved to
another record does not open there.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite

PSEUDONYM_PREFIX = "hmac-sha256:"
SEALED_PREFIX = "hpke-x25519-a256gcm.v1"
MIN_PEPPER_BYTES = 32
_SUITE = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.AES_256_GCM)
_INFO = b"ig-policy decision-log input v1 "


class ProtectionKeyError(ValueError):
    """A key or pepper that cannot be used (the message names what is wrong)."""


def parse_pepper(data: bytes, source: str) -> bytes:
    pepper = data.strip()
    if len(pepper) < MIN_PEPPER_BYTES:
        raise ProtectionKeyError(
            f"{source}: a pepper needs at least {MIN_PEPPER_BYTES} bytes of secret, found {len(pepper)}")
    return pepper


def parse_public_key(pem: bytes, source: str) -> X25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as error:
        raise ProtectionKeyError(f"{source}: not a PEM public key ({error})") from error
    if not isinstance(key, X25519PublicKey):
        raise ProtectionKeyError(f"{source}: an X25519 public key is required, found {type(key).__name__}")
    return key


def parse_private_key(pem: bytes, source: str) -> X25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as error:
        raise ProtectionKeyError(f"{source}: not an unencrypted PEM private key ({error})") from error
    if not isinstance(key, X25519PrivateKey):
        raise ProtectionKeyError(f"{source}: an X25519 private key is required, found {type(key).__name__}")
    return key


def key_id(public_key: X25519PublicKey) -> str:
    """Names the key pair a record was sealed to (16 hex of the public key's SHA-256)."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _canonical(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class Pseudonymizer:
    pepper: bytes

    def __call__(self, value: Any) -> str:
        return PSEUDONYM_PREFIX + hmac.new(self.pepper, _canonical(value), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class InputSealer:
    public_key: X25519PublicKey

    @property
    def key_id(self) -> str:
        return key_id(self.public_key)

    def seal(self, document: Any, decision_id: str) -> str:
        """``hpke-x25519-a256gcm.v1.<key id>.<base64url(enc || ciphertext)>``."""
        sealed = _SUITE.encrypt(_canonical(document), self.public_key, info=_INFO + decision_id.encode())
        return f"{SEALED_PREFIX}.{self.key_id}.{base64.urlsafe_b64encode(sealed).decode().rstrip('=')}"


class SealedInputError(ValueError):
    """A sealed input that cannot be opened with this key (another key, altered, or another record's)."""


@dataclass(frozen=True)
class InputOpener:
    private_key: X25519PrivateKey

    @property
    def key_id(self) -> str:
        return key_id(self.private_key.public_key())

    def open(self, sealed: str, decision_id: str) -> Any:
        prefix, _, rest = sealed.partition(f"{SEALED_PREFIX}.")
        kid, _, body = rest.partition(".")
        if prefix or not body:
            raise SealedInputError(f"{decision_id}: not a sealed input of format {SEALED_PREFIX}")
        if kid != self.key_id:
            raise SealedInputError(f"{decision_id}: sealed to key {kid}, this key is {self.key_id}")
        try:
            blob = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            plain = _SUITE.decrypt(blob, self.private_key, info=_INFO + decision_id.encode())
        except (InvalidTag, ValueError) as error:
            raise SealedInputError(f"{decision_id}: the sealed input does not open with key {self.key_id}") from error
        return json.loads(plain)


@dataclass(frozen=True)
class RecordProtection:
    """What the decision log writer holds: the pepper and the replay key's public half, never the private one."""

    pseudonymize: Pseudonymizer
    sealer: InputSealer
