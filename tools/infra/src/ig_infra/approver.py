"""The local suite's migration approver: a plan-signing key pair for the ``approver`` identity.

A key of its own rather than the approver's TLS key: the workload key is replaced at every certificate renewal
(24 h), which would void every approval made before it, and a key should serve one purpose. Created once per run
dir and kept; its public half is the one entry of the migration service's approvers directory
(IG_MIGRATION_APPROVERS). Sign a plan with `ig-migrate approve --key $IG_IDENTITIES/approver/plan-signing.key PLAN`.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization

from ig_infra.pki import _write_public, identities_directory, load_or_create_signing_key

APPROVER = "approver"


def approver_signing_key(run: Path) -> Path:
    return identities_directory(run) / APPROVER / "plan-signing.key"


def approvers_directory(run: Path) -> Path:
    return run / "migration-approvers"


def ensure_approver_signing_key(run: Path) -> Path:
    """The approver's signing key (created when missing) with its public key listed; returns the approvers dir."""
    key_path = approver_signing_key(run)
    key = load_or_create_signing_key(key_path)
    directory = approvers_directory(run)
    directory.mkdir(parents=True, exist_ok=True)
    _write_public(directory / f"{APPROVER}.pub", key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return directory
