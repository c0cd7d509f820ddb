"""Which of a tenant's trusted signers signed a bundle's manifest, from the bundle's metadata files.

Only the service's configuration says whom to trust: a bundle's own ``cosign.pub`` or key hint is read solely to
name the signer in the refusal, so that whoever registers learns which key id to have pinned.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ig_evidence.domain import manifest as mf
from ig_evidence.domain import signatures
from ig_evidence.domain.trusted_signers import SignerNotTrusted, TenantSigners, key_id, key_id_from_hint


@dataclass(frozen=True)
class BundleSigner:
    """The trusted signer a bundle was verified against, as the service's configuration names it."""

    name: str
    key_id: str
    public_key: ec.EllipticCurvePublicKey


def claimed_key_id(metadata: dict[str, bytes]) -> str | None:
    """The key id the bundle says it was signed with (its cosign.pub, else its Sigstore bundle's hint)."""
    pem = metadata.get("cosign.pub")
    if pem:
        try:
            loaded = serialization.load_pem_public_key(pem)
        except ValueError:
            loaded = None
        if isinstance(loaded, ec.EllipticCurvePublicKey):
            return key_id(loaded)
    try:
        hint = json.loads(metadata.get(mf.BUNDLE_FILE, b"{}"))["verificationMaterial"]["publicKey"]["hint"]
    except (ValueError, KeyError, TypeError):
        return None
    return key_id_from_hint(hint) if isinstance(hint, str) else None


def identify_signer(metadata: dict[str, bytes], trusted: TenantSigners, tenant: str) -> BundleSigner:
    """The pinned key of ``tenant`` whose signature ``manifest.json.sig`` is; SignerNotTrusted otherwise."""
    manifest = metadata.get(mf.MANIFEST_FILE)
    raw_signature = metadata.get(mf.SIGNATURE_FILE)
    if manifest is None or raw_signature is None:
        raise SignerNotTrusted(f"{mf.MANIFEST_FILE} and {mf.SIGNATURE_FILE} are required to identify the signer")
    try:
        signature = base64.b64decode(raw_signature.strip(), validate=True)
    except (binascii.Error, ValueError) as error:
        raise SignerNotTrusted(f"{mf.SIGNATURE_FILE}: not base64 ({error})") from error
    for pinned in trusted.keys:
        try:
            signatures.verify(pinned.public_key, signature, manifest)
        except signatures.SignatureError:
            continue
        return BundleSigner(pinned.name, pinned.key_id, pinned.public_key)
    claimed = claimed_key_id(metadata)
    who = f"key id {claimed}" if claimed else "a key the bundle does not name"
    raise SignerNotTrusted(f"{mf.MANIFEST_FILE} is signed by {who}, which is not trusted for tenant {tenant!r} "
                           f"(trusted: {trusted.describe()})")
