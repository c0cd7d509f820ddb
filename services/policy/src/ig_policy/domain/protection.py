"""What protects a decision record: keyed pseudonyms for what the log shows, a sealed copy of the whole input.

Pseudonyms are HMAC-SHA256 under a secret pepper: equal values give equal pseudonyms (a log reader can still count
one subject's decisions), but without the pepper nobody can test a guess (a bare SHA-256 of ``tenant/id`` is
reversed by hashing every known user id).

The input is sealed to the replay key's public half with HPKE (RFC 9180, base mode, DHKEM(X25519, HKDF-SHA256),
HKDF-SHA256, AES-256-GCM, as ``cryptography``'s ``hpke.Suite`` implements it), in two layers (format v2): a fresh
random AES-256-GCM data key per writer batch, sealed once with HPKE (its own ephemeral X25519 key), and each
record's input encrypted under that data key with a random 96-bit nonce and the decision id as associated data.
Every record carries the sealed data key, so each opens on its own; the writer, which holds only the public key,
forgets the data key when the batch is written (``new_key``) and cannot open any record it wrote, and only the
holder of the private key (the replay tool) can. A sealed input moved to another record does not open there (the
decision id is authenticated). Why two layers: one X25519 key agreement per record (v1) cost ~0.1 ms, a fifth of
the writer's CPU per decision; per batch it costs that once, and the replay tool opens a batch's records with one
key agreement. Records of format v1 (one HPKE seal per record, ``info`` naming the decision) still open.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite

PSEUDONYM_PREFIX = "hmac-sha256:"
SEALED_PREFIX = "hpke-x25519-a256gcm.v2"
SEALED_PREFIX_V1 = "hpke-x25519-a256gcm.v1"
MIN_PEPPER_BYTES = 32
_SUITE = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.AES_256_GCM)
_INFO = b"ig-policy decision-log input v1 "
_INFO_DATA_KEY = b"ig-policy decision-log data key v2"
_AAD = b"ig-policy decision-log input v2 "
_NONCE_BYTES = 12
# Random 96-bit nonces under one key stay far from a collision at this many (NIST SP 800-38D allows 2^32).
MAX_SEALS_PER_KEY = 4096
_OPENED_KEYS = 1024


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


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class InputSealer:
    """Seals inputs to ``public_key``; the data key lives until ``new_key`` (the writer calls it per batch) or
    MAX_SEALS_PER_KEY seals."""

    def __init__(self, public_key: X25519PublicKey) -> None:
        self.public_key = public_key
        self.key_id = key_id(public_key)
        self._data_key: AESGCM | None = None
        self._sealed_key = ""
        self._seals = 0

    def new_key(self) -> None:
        """Forget the data key: the next seal makes a new one (and seals it to the public key)."""
        self._data_key, self._sealed_key, self._seals = None, "", 0

    def seal(self, document: Any, decision_id: str) -> str:
        """``hpke-x25519-a256gcm.v2.<key id>.<base64url(HPKE enc || sealed data key)>.<base64url(nonce ||
        ciphertext)>``."""
        if self._data_key is None or self._seals >= MAX_SEALS_PER_KEY:
            data_key = AESGCM.generate_key(bit_length=256)
            self._data_key = AESGCM(data_key)
            self._sealed_key = _b64(_SUITE.encrypt(data_key, self.public_key, info=_INFO_DATA_KEY))
            self._seals = 0
        self._seals += 1
        nonce = os.urandom(_NONCE_BYTES)
        ciphertext = self._data_key.encrypt(nonce, _canonical(document), _AAD + decision_id.encode())
        return f"{SEALED_PREFIX}.{self.key_id}.{self._sealed_key}.{_b64(nonce + ciphertext)}"


class SealedInputError(ValueError):
    """A sealed input that cannot be opened with this key (another key, altered, or another record's)."""


class InputOpener:
    """Opens sealed inputs of either format; data keys already opened are remembered (a batch shares one)."""

    def __init__(self, private_key: X25519PrivateKey) -> None:
        self.private_key = private_key
        self.key_id = key_id(private_key.public_key())
        self._data_keys: dict[str, AESGCM] = {}

    def open(self, sealed: str, decision_id: str) -> Any:
        parts = sealed.split(".")
        version = ".".join(parts[:2])
        if (version, len(parts)) in ((SEALED_PREFIX, 5), (SEALED_PREFIX_V1, 4)):
            kid, body = parts[2], parts[3:]
        else:
            raise SealedInputError(f"{decision_id}: not a sealed input of format {SEALED_PREFIX} or "
                                   f"{SEALED_PREFIX_V1}")
        if not all(body):
            raise SealedInputError(f"{decision_id}: not a sealed input of format {version}")
        if kid != self.key_id:
            raise SealedInputError(f"{decision_id}: sealed to key {kid}, this key is {self.key_id}")
        try:
            if version == SEALED_PREFIX_V1:
                plain = _SUITE.decrypt(_unb64(body[0]), self.private_key, info=_INFO + decision_id.encode())
            else:
                blob = _unb64(body[1])
                plain = self._data_key(body[0]).decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:],
                                                        _AAD + decision_id.encode())
        except (InvalidTag, ValueError) as error:
            raise SealedInputError(f"{decision_id}: the sealed input does not open with key {self.key_id}") from error
        return json.loads(plain)

    def _data_key(self, sealed_key: str) -> AESGCM:
        data_key = self._data_keys.get(sealed_key)
        if data_key is None:
            data_key = AESGCM(_SUITE.decrypt(_unb64(sealed_key), self.private_key, info=_INFO_DATA_KEY))
            if len(self._data_keys) >= _OPENED_KEYS:
                self._data_keys.clear()
            self._data_keys[sealed_key] = data_key
        return data_key


@dataclass(frozen=True)
class RecordProtection:
    """What the decision log writer holds: the pepper and the replay key's public half, never the private one."""

    pseudonymize: Pseudonymizer
    sealer: InputSealer
