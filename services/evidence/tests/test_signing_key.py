"""The checkpoint key file: only a file, Ed25519, and not open to every user."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from ig_evidence.domain import note
from ig_evidence.store.signing_key import SigningKeyProblem, load_checkpoint_signer


def pem(key: Ed25519PrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def write(path: Path, data: bytes, mode: int) -> Path:
    path.write_bytes(data)
    os.chmod(path, mode)
    return path


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o440])
def test_a_key_file_the_world_cannot_read_signs_checkpoints(tmp_path: Path, mode: int) -> None:
    key = Ed25519PrivateKey.generate()
    signer = load_checkpoint_signer("test.example/ledger", write(tmp_path / "k", pem(key), mode))
    signed = signer.sign(3, bytes(32))
    assert note.open_checkpoint(signed, signer.verifier_key).tree_size == 3
    assert signer.verifier_key == note.verifier_key("test.example/ledger", key.public_key())


@pytest.mark.parametrize(("setup", "message"), [
    (lambda d: d / "missing", "No such file"),
    (lambda d: write(d / "k", pem(Ed25519PrivateKey.generate()), 0o644), "open to every user"),
    (lambda d: write(d / "k", pem(ec.generate_private_key(ec.SECP256R1())), 0o600), "must be Ed25519"),
    (lambda d: write(d / "k", b"not a key", 0o600), "not a PEM private key"),
], ids=["missing", "world-readable", "not-ed25519", "not-pem"])
def test_a_bad_key_file_is_refused_naming_it(tmp_path: Path, setup: object, message: str) -> None:
    path = setup(tmp_path)  # type: ignore[operator]
    with pytest.raises(SigningKeyProblem, match=message) as refused:
        load_checkpoint_signer("o", path)
    assert str(path) in str(refused.value)
