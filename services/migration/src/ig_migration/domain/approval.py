"""Four-eyes approval of a plan: a detached signature by a configured approver who is not the submitter.

What is signed is the plan document exactly as submitted (its UTF-8 bytes, the text the service stores), so the
signature is what ``cosign sign-blob --key`` makes of the plan file and ``cosign verify-blob --key`` checks: ECDSA
P-256 over SHA-256, ASN.1 DER, base64. Any change to the plan after signing, even whitespace, breaks it; a reviewer
approves the very bytes they read. Pure: keys and bytes in, a verdict out (no files, no clock).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ig_migration.domain.plan import plan_digest

SIGNATURE_ALGORITHM = ec.ECDSA(hashes.SHA256())


class ApprovalRefused(ValueError):
    """The plan may not run; the message says what is missing or wrong."""


@dataclass(frozen=True)
class ApproverKey:
    """An approver's public key and the identity (workload or user name) it belongs to."""

    name: str
    public_key: ec.EllipticCurvePublicKey

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the key's SubjectPublicKeyInfo, short, to name a key in logs and reports."""
        der = self.public_key.public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
        return hashlib.sha256(der).hexdigest()[:16]


@dataclass(frozen=True)
class Approval:
    approver: str
    key_fingerprint: str
    plan_sha256: str


def signed_bytes(plan_yaml: str) -> bytes:
    return plan_yaml.encode("utf-8")


def approver_key_from_pem(name: str, pem: bytes) -> ApproverKey:
    """An approver key from a PEM public key (``cosign.pub``, ``openssl ec -pubout``); only ECDSA P-256."""
    if not name.strip():
        raise ValueError("an approver needs a name")
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm) as error:
        raise ValueError(f"approver {name}: not a PEM public key ({error})") from error
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError(f"approver {name}: key must be ECDSA P-256")
    return ApproverKey(name, key)


def private_key_from_pem(pem: bytes) -> ec.EllipticCurvePrivateKey:
    """An approver's signing key: PKCS#8 or SEC1 PEM, unencrypted, ECDSA P-256."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as error:
        raise ValueError(f"not an unencrypted PEM private key ({error})") from error
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("the signing key must be ECDSA P-256")
    return key


def sign_plan(private_key: ec.EllipticCurvePrivateKey, plan_yaml: str) -> str:
    """The detached signature as ``cosign sign-blob --key`` prints it: base64 of the DER ECDSA signature."""
    return base64.b64encode(private_key.sign(signed_bytes(plan_yaml), SIGNATURE_ALGORITHM)).decode("ascii")


def _decode(signature: str) -> bytes:
    try:
        return base64.b64decode("".join(signature.split()), validate=True)
    except (binascii.Error, ValueError) as error:
        raise ApprovalRefused(f"the plan's signature is not base64 ({error})") from error


def verify_approval(plan_yaml: str, signature: str, approvers: Sequence[ApproverKey],
                    submitters: Collection[str]) -> Approval:
    """The approval of ``plan_yaml``, or ApprovalRefused naming why: no signature, no approver configured, a
    signature no configured key verifies (a key not listed, or a plan changed after signing: the two cannot be told
    apart from a bare signature), or an approver who submitted the plan themselves."""
    digest = plan_digest(plan_yaml)
    if not signature.strip():
        raise ApprovalRefused(f"plan sha256 {digest} is not approved: no signature given "
                              f"(an approver makes one with `ig-migrate approve --key KEY PLAN`)")
    if not approvers:
        raise ApprovalRefused("no approver keys are configured (IG_MIGRATION_APPROVERS), so no plan can be approved")
    raw = _decode(signature)
    data = signed_bytes(plan_yaml)
    for approver in approvers:
        try:
            approver.public_key.verify(raw, data, SIGNATURE_ALGORITHM)
        except InvalidSignature:
            continue
        if approver.name in submitters:
            raise ApprovalRefused(f"plan sha256 {digest} is signed by {approver.name}, who submitted it; "
                                  f"an approver other than the submitter must sign")
        return Approval(approver.name, approver.fingerprint, digest)
    raise ApprovalRefused(f"the signature does not verify for plan sha256 {digest} with any of the "
                          f"{len(approvers)} configured approver keys ({', '.join(a.name for a in approvers)}): "
                          f"signed by a key not listed, or the plan changed after it was signed")
