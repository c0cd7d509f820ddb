"""Reading the decision log's secrets from files: the pepper and the replay key (its public half for the service,
its private half for the replay tool only). Each error names the file and what is wrong with it."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ig_policy.domain.protection import (
    InputOpener,
    InputSealer,
    ProtectionKeyError,
    Pseudonymizer,
    RecordProtection,
    parse_pepper,
    parse_private_key,
    parse_public_key,
)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise ProtectionKeyError(f"{path}: cannot be read ({error.strerror or error})") from error


def load_pepper(path: Path) -> Pseudonymizer:
    return Pseudonymizer(parse_pepper(_read(path), str(path)))


def load_sealer(path: Path) -> InputSealer:
    return InputSealer(parse_public_key(_read(path), str(path)))


def load_opener(path: Path) -> InputOpener:
    return InputOpener(parse_private_key(_read(path), str(path)))


def load_record_protection(pepper_file: Path, input_key_file: Path) -> RecordProtection:
    return RecordProtection(load_pepper(pepper_file), load_sealer(input_key_file))


PEPPER_FILE, INPUT_KEY_FILE, REPLAY_KEY_FILE = "pepper", "input-key.pub", "replay.key"


def _write_secret(path: Path, data: bytes) -> None:
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
        out.write(data)


def write_decision_log_keys(directory: Path) -> dict[str, Path]:
    """A new pepper and replay key pair in ``directory`` (which must not hold them yet): ``pepper`` and
    ``replay.key`` 0600, ``input-key.pub`` 0644. The service gets the first and the last; the replay tool the
    private key."""
    directory.mkdir(parents=True, exist_ok=True)
    key = X25519PrivateKey.generate()
    paths = {"pepper": directory / PEPPER_FILE, "input_key": directory / INPUT_KEY_FILE,
             "replay_key": directory / REPLAY_KEY_FILE}
    _write_secret(paths["pepper"], secrets.token_urlsafe(32).encode())
    _write_secret(paths["replay_key"], key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    paths["input_key"].write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                                 serialization.PublicFormat.SubjectPublicKeyInfo))
    return paths
