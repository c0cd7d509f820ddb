"""The ledger's Ed25519 checkpoint key: a file, never a database row.

``IG_LEDGER_KEY_PATH`` names it (unset: ``ledger-checkpoint.key`` beside the service's workload certificate, where
``ig-infra`` makes one; in the chart a mounted Secret). The database role that appends entries cannot read it, so
whoever gets that role, or a dump of the schema, cannot re-sign a rewritten history. Migration 0005 removed the
table in which a generated key used to be kept. After a rotation the verifier keys of earlier keys
(``IG_LEDGER_PREVIOUS_VERIFIER_KEYS``) keep the checkpoints they signed verifiable; new ones are signed by the new
key. ``CheckpointSigning`` (store/ledger.py) is the interface a KMS- or HSM-backed signer would implement instead.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ig_evidence.store.ledger import CheckpointSigner

KEY_FILE_NAME = "ledger-checkpoint.key"


class SigningKeyProblem(ValueError):
    """The checkpoint key file is missing, unreadable, too open or not an Ed25519 PKCS#8 PEM key."""


def load_checkpoint_signer(origin: str, key_path: Path) -> CheckpointSigner:
    return CheckpointSigner(origin, read_ed25519_key(key_path, "the ledger checkpoint key"))


def read_ed25519_key(key_path: Path, what: str) -> Ed25519PrivateKey:
    """An Ed25519 private key from a PEM PKCS#8 file no other user may read (the checkpoint key, a witness key)."""
    try:
        mode = key_path.stat().st_mode & 0o777
        pem = key_path.read_bytes()
    except OSError as error:
        raise SigningKeyProblem(f"{key_path}: {error.strerror or error}") from error
    # A Kubernetes Secret volume gives the pod's group read access (0440 with fsGroup): only the world is refused.
    if mode & 0o007:
        raise SigningKeyProblem(f"{key_path}: open to every user (mode {mode:o}); 0600, 0400 or 0440 at most")
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except ValueError as error:
        raise SigningKeyProblem(f"{key_path}: not a PEM private key ({error})") from error
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyProblem(f"{key_path}: {what} must be Ed25519")
    return key
