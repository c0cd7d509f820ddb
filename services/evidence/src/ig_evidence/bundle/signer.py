"""Which of a tenant's trusted signers signed a bundle's manifest, from the bundle's metadata files.

Only the service's configuration says whom to trust: a bundle's own ``cosign.pub`` or key hint is read solely to
name the signer in the refusal, so that whoever registers learns which key id to have pinned. A bundle whose
Sigstore bundle carries a certificate is keyless: its signer is the first of the tenant's keyless identities the
certificate satisfies (sigstore-python, offline, against the configured trusted root), and every other signature
in the bundle (``manifest.json.sig``, the provenance envelope) must then be by that certificate's key.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ig_evidence.bundle.keyless import (
    IdentityPolicy,
    KeylessRefused,
    KeylessVerifier,
    certificate_issuer,
    certificate_subjects,
)
from ig_evidence.domain import manifest as mf
from ig_evidence.domain import signatures
from ig_evidence.domain.trusted_signers import (
    KeylessIdentity,
    SignerNotTrusted,
    TenantSigners,
    key_id,
    key_id_from_hint,
)


@dataclass(frozen=True)
class BundleSigner:
    """The trusted signer a bundle was verified against, as the service's configuration names it."""

    name: str
    key_id: str  # a pinned key's id; empty for a keyless signer (its name carries the certificate's subject)
    public_key: ec.EllipticCurvePublicKey
    identity: KeylessIdentity | None = None  # the tenant's keyless identity the certificate satisfied


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


def _certificate(sigstore_bundle: bytes | None) -> x509.Certificate | None:
    """The signing certificate a Sigstore bundle carries (a keyless signature), if any."""
    try:
        material = json.loads(sigstore_bundle or b"{}")["verificationMaterial"]
        raw = material["certificate"]["rawBytes"] if "certificate" in material else \
            material["x509CertificateChain"]["certificates"][0]["rawBytes"]
        return x509.load_der_x509_certificate(base64.b64decode(raw, validate=True))
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def _keyless_signer(metadata: dict[str, bytes], certificate: x509.Certificate, trusted: TenantSigners, tenant: str,
                    keyless: KeylessVerifier | None) -> BundleSigner:
    who = (f"a certificate for {', '.join(certificate_subjects(certificate)) or '(no subject)'} "
           f"from {certificate_issuer(certificate) or '(no issuer)'}")
    if not trusted.identities or keyless is None:
        raise SignerNotTrusted(f"{mf.MANIFEST_FILE} is signed keylessly by {who}, and no keyless identity is trusted "
                               f"for tenant {tenant!r} (trusted: {trusted.describe()})")
    public_key = certificate.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise SignerNotTrusted(f"{mf.MANIFEST_FILE}: the signing certificate's key is not ECDSA")
    refusals = []
    for identity in trusted.identities:
        try:
            signed = keyless.verify(metadata[mf.BUNDLE_FILE], metadata[mf.MANIFEST_FILE],
                                    IdentityPolicy(identity.issuer, identity.subject_regexp))
        except KeylessRefused as error:
            refusals.append(f"{identity.name}: {error}")
            continue
        return BundleSigner(f"{identity.name} ({signed.subject})", "", public_key, identity)
    raise SignerNotTrusted(f"{mf.MANIFEST_FILE} is signed keylessly by {who}, which is not trusted for tenant "
                           f"{tenant!r}: {'; '.join(refusals)}")


def identify_signer(metadata: dict[str, bytes], trusted: TenantSigners, tenant: str,
                    keyless: KeylessVerifier | None = None) -> BundleSigner:
    """The pinned key (or keyless identity) of ``tenant`` that signed ``manifest.json``; SignerNotTrusted
    otherwise."""
    manifest = metadata.get(mf.MANIFEST_FILE)
    raw_signature = metadata.get(mf.SIGNATURE_FILE)
    if manifest is None or raw_signature is None:
        raise SignerNotTrusted(f"{mf.MANIFEST_FILE} and {mf.SIGNATURE_FILE} are required to identify the signer")
    certificate = _certificate(metadata.get(mf.BUNDLE_FILE))
    if certificate is not None:
        return _keyless_signer(metadata, certificate, trusted, tenant, keyless)
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
