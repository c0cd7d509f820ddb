"""Signing keys for the CLI: from a file, an ``env://VAR``, or a Kubernetes secret mount directory.

Private keys are PKCS#8 PEM (optionally encrypted) or cosign's own encrypted format, the password from
COSIGN_PASSWORD or IG_EVIDENCE_KEY_PASSWORD;
public keys are PKIX PEM, the format ``cosign verify-blob --key`` reads. A secret mount is a directory holding
``cosign.key`` (and optionally ``cosign.password``), as a Kubernetes Secret volume lays it out.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ig_evidence.cosign_key import CosignKeyError, decrypt_cosign_key, is_cosign_key
from ig_evidence.domain.signatures import SignatureError, require_p256

PASSWORD_VARIABLES = ("IG_EVIDENCE_KEY_PASSWORD", "COSIGN_PASSWORD")


class KeyProblem(ValueError):
    """A key cannot be read, decrypted or is of the wrong kind (the message says which)."""


def _password(explicit: str | None) -> bytes | None:
    if explicit is not None:
        return explicit.encode() or None
    for variable in PASSWORD_VARIABLES:
        if os.environ.get(variable):
            return os.environ[variable].encode()
    return None


def _read_reference(reference: str) -> tuple[bytes, str, str | None]:
    """PEM bytes, a description for errors, and a password found beside a secret mount."""
    if reference.startswith("env://"):
        variable = reference[len("env://"):]
        value = os.environ.get(variable)
        if not value:
            raise KeyProblem(f"key variable {variable} is not set or empty")
        return value.encode(), f"${variable}", None
    path = Path(reference)
    mount_password = None
    if path.is_dir():
        password_file = path / "cosign.password"
        if password_file.is_file():
            mount_password = password_file.read_text().rstrip("\n")
        path = path / "cosign.key"
    try:
        return path.read_bytes(), str(path), mount_password
    except OSError as error:
        raise KeyProblem(f"cannot read key {path}: {error.strerror}") from error


def load_private_key(reference: str, password: str | None = None) -> ec.EllipticCurvePrivateKey:
    pem, where, mount_password = _read_reference(reference)
    secret = _password(password if password is not None else mount_password)
    cosign_format = is_cosign_key(pem)
    encrypted = cosign_format or b"ENCRYPTED PRIVATE KEY" in pem
    if encrypted and secret is None:
        raise KeyProblem(f"{where}: the key is encrypted; give its password in {' or '.join(PASSWORD_VARIABLES)}")
    try:
        if cosign_format:
            assert secret is not None
            key = decrypt_cosign_key(pem, secret)
        else:
            key = serialization.load_pem_private_key(pem, password=secret if encrypted else None)
    except CosignKeyError as error:
        raise KeyProblem(f"{where}: cannot load cosign private key ({error})") from error
    except (ValueError, TypeError) as error:
        reason = "wrong password" if encrypted else "not a PEM private key"
        raise KeyProblem(f"{where}: cannot load private key ({reason})") from error
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise KeyProblem(f"{where}: key must be ECDSA P-256")
    try:
        require_p256(key)
    except SignatureError as error:
        raise KeyProblem(f"{where}: {error}") from error
    return key


def load_public_key(reference: str) -> ec.EllipticCurvePublicKey:
    pem, where, _ = _read_reference(reference)
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as error:
        raise KeyProblem(f"{where}: not a PEM public key") from error
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise KeyProblem(f"{where}: public key must be ECDSA P-256")
    return key


def public_pem(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def generate_key_pair(directory: Path, password: str | None, *, force: bool = False) -> tuple[Path, Path]:
    """Write cosign.key (PKCS#8, encrypted when a password is given, mode 0600) and cosign.pub."""
    private_path, public_path = directory / "cosign.key", directory / "cosign.pub"
    if not force and (private_path.exists() or public_path.exists()):
        raise KeyProblem(f"{private_path} or {public_path} exists; pass --force to overwrite")
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    secret = _password(password)
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(secret) if secret else serialization.NoEncryption())
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    for path, data, mode in ((private_path, private_pem, 0o600), (public_path, public_pem(key.public_key()), 0o644)):
        handle, temp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.")
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.chmod(temp, mode)
        os.replace(temp, path)
    return private_path, public_path
