"""The local suite's release signing key, and the evidence service's trusted-signers file that pins it.

The evidence service accepts a tenant's bundle only from a signer pinned for that tenant (IG_TRUSTED_SIGNERS_PATH),
so the key the release flow signs with has to exist, and be pinned, before the service starts. One ECDSA P-256 key
per run dir (what cosign and ig-evidence sign with), kept 0600 beside the release identity's certificate; it is
pinned for every tenant the authorization table lets the release identity act for.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml
from cryptography.hazmat.primitives import serialization
from ig_common.authz import AuthorizationTable

from ig_infra.pki import _write_public, identities_directory, load_or_create_signing_key

RELEASE = "release"
SIGNER_NAME = "local release key (ig-infra)"
TRUSTED_SIGNERS_FILE = "evidence-trusted-signers.yaml"  # in the run dir


def release_signing_key(run: Path) -> Path:
    return identities_directory(run) / RELEASE / "release-signing.key"


def trusted_signers_file(run: Path) -> Path:
    return run / TRUSTED_SIGNERS_FILE


def ensure_release_signing_key(run: Path, authz_table: Path) -> Path:
    """The key (created when missing), its .pub beside it, and the trusted-signers file pinning it; returns the
    file."""
    key_path = release_signing_key(run)
    key = load_or_create_signing_key(key_path)
    public = key.public_key()
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    _write_public(key_path.with_suffix(".pub"), pem)
    key_id = hashlib.sha256(public.public_bytes(serialization.Encoding.DER,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)).hexdigest()
    entry = {"name": SIGNER_NAME, "keyId": key_id, "publicKeyPath": str(key_path.with_suffix(".pub"))}
    tenants = sorted(AuthorizationTable.load(authz_table).tenants_of(RELEASE))
    path = trusted_signers_file(run)
    path.write_text("# Written by ig-infra: the local release key, pinned for the release identity's tenants.\n"
                    + yaml.safe_dump({"tenants": {t: [dict(entry)] for t in tenants}}, sort_keys=False))
    return path
