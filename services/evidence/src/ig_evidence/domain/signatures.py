"""Key-based, cosign-compatible signatures: ECDSA P-256 over SHA-256, ASN.1 DER, base64.

Signing is deterministic (RFC 6979) so a rebuild from the same inputs gives the same signature bytes. The
Sigstore bundle (v0.3, messageSignature + publicKey hint) is what ``cosign verify-blob --bundle`` reads;
DSSE envelopes carry the in-toto provenance statement.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"


class SignatureError(ValueError):
    """A signature is malformed or does not verify."""


def _algorithm() -> ec.ECDSA:
    return ec.ECDSA(hashes.SHA256(), deterministic_signing=True)


def require_p256(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> None:
    if not isinstance(key.curve, ec.SECP256R1):
        raise SignatureError(f"key must be ECDSA P-256, not {key.curve.name}")


def sign(private_key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    require_p256(private_key)
    return private_key.sign(data, _algorithm())


def verify(public_key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes) -> None:
    try:
        public_key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as error:
        raise SignatureError("signature does not verify with the given public key") from error


def public_key_hint(public_key: ec.EllipticCurvePublicKey) -> str:
    """base64(SHA-256(PKIX DER)), the key id sigstore tools put in a bundle's publicKey hint."""
    der = public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def sigstore_bundle(public_key: ec.EllipticCurvePublicKey, data: bytes, signature: bytes) -> dict[str, Any]:
    return {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {"publicKey": {"hint": public_key_hint(public_key)}},
        "messageSignature": {
            "messageDigest": {"algorithm": "SHA2_256",
                              "digest": base64.b64encode(hashlib.sha256(data).digest()).decode()},
            "signature": base64.b64encode(signature).decode(),
        },
    }


def check_sigstore_bundle(bundle: object, public_key: ec.EllipticCurvePublicKey, data: bytes) -> None:
    """The offline check cosign makes with --key and no transparency log: digest and signature."""
    try:
        assert isinstance(bundle, dict)
        if bundle["mediaType"] != BUNDLE_MEDIA_TYPE:
            raise SignatureError(f"bundle media type {bundle['mediaType']!r} is not {BUNDLE_MEDIA_TYPE}")
        message = bundle["messageSignature"]
        digest = base64.b64decode(message["messageDigest"]["digest"], validate=True)
        signature = base64.b64decode(message["signature"], validate=True)
    except (AssertionError, KeyError, TypeError, ValueError) as error:
        if isinstance(error, SignatureError):
            raise
        raise SignatureError(f"malformed sigstore bundle: {error!r}") from error
    if digest != hashlib.sha256(data).digest():
        raise SignatureError("bundle message digest does not match the signed file")
    verify(public_key, signature, data)


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE pre-authentication encoding."""
    encoded_type = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(encoded_type), encoded_type, len(payload), payload)


def dsse_envelope(private_key: ec.EllipticCurvePrivateKey, payload: bytes,
                  payload_type: str = IN_TOTO_PAYLOAD_TYPE) -> dict[str, Any]:
    signature = sign(private_key, pae(payload_type, payload))
    return {"payloadType": payload_type, "payload": base64.b64encode(payload).decode(),
            "signatures": [{"keyid": public_key_hint(private_key.public_key()),
                            "sig": base64.b64encode(signature).decode()}]}


def open_dsse_envelope(envelope: object, public_key: ec.EllipticCurvePublicKey) -> bytes:
    """Verify a DSSE envelope and return its payload."""
    try:
        assert isinstance(envelope, dict)
        payload_type = envelope["payloadType"]
        payload = base64.b64decode(envelope["payload"], validate=True)
        signatures = [base64.b64decode(s["sig"], validate=True) for s in envelope["signatures"]]
    except (AssertionError, KeyError, TypeError, ValueError) as error:
        raise SignatureError(f"malformed DSSE envelope: {error!r}") from error
    for signature in signatures:
        try:
            verify(public_key, signature, pae(payload_type, payload))
            return payload
        except SignatureError:
            continue
    raise SignatureError("no DSSE signature verifies with the given public key")
