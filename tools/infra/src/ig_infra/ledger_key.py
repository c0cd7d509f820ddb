"""The local evidence ledger's checkpoint key: an Ed25519 key file beside the evidence service's certificate.

Made once per run dir and kept (0600), like the approver's plan-signing key: it is not the TLS key, which each 24 h
renewal replaces, and it never goes into the database (the evidence service reads it from
``$IG_IDENTITIES/evidence/ledger-checkpoint.key``, or wherever ``IG_LEDGER_KEY_PATH`` points).
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ig_infra.pki import _write_private, identities_directory

KEY_FILE_NAME = "ledger-checkpoint.key"


def ledger_checkpoint_key(run: Path) -> Path:
    return identities_directory(run) / "evidence" / KEY_FILE_NAME


def ensure_ledger_checkpoint_key(run: Path) -> Path:
    path = ledger_checkpoint_key(run)
    if not path.exists():
        _write_private(path, Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return path
