"""A local Sigstore, minted with `cryptography`, for testing keyless verification offline.

What the public-good instance would hand a verifier, made here from scratch: a Fulcio-like CA (root and
intermediate) issuing short-lived code-signing certificates with Fulcio's OIDC issuer extensions and an embedded
SCT from a CT log key, a Rekor-like log key that signs checkpoints (signed-note form) and signed entry timestamps,
and the ``trusted_root.json`` (Sigstore protobuf-specs ``TrustedRoot``) that pins them. ``sign`` produces a
v0.3 Sigstore bundle as Rekor v1 makes it (a ``hashedrekord`` 0.0.1 entry, an inclusion proof in a small tree, a
signed checkpoint and an inclusion promise with the integration time); ``sign_v2`` as Rekor v2 and a timestamp
authority make it (``hashedrekord`` 0.0.2, an Ed25519 C2SP checkpoint, an RFC 3161 timestamp from `tsa_local`).
Both are what sigstore-python and cosign verify without the network.

Every part can be swapped for a rogue one (another CA, log or CT log), to test that a verifier refuses it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import rfc8785
from cryptography import x509
from cryptography.hazmat import asn1
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from ig_evidence.domain import merkle

from .tsa_local import LocalTSA

OIDC_ISSUER_LEGACY = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
OIDC_ISSUER_V2 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
SCT_LIST = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")
SIGNED_AT = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
CERT_LIFETIME = timedelta(minutes=10)  # Fulcio's


def spki_der(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_id(key: ec.EllipticCurvePublicKey) -> bytes:
    """RFC 6962's log id (and Sigstore's key id): SHA-256 of the SubjectPublicKeyInfo."""
    return hashlib.sha256(spki_der(key)).digest()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ski_aki(builder: x509.CertificateBuilder, subject_key: ec.EllipticCurvePublicKey,
             issuer_key: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
    return (builder
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(subject_key), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key), critical=False))


@dataclass
class LocalCA:
    """A Fulcio-like CA: a self-signed root and an intermediate that issues the signing certificates."""

    name: str = "local-fulcio"
    not_before: datetime = SIGNED_AT - timedelta(days=30)
    root_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP384R1()))
    intermediate_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP384R1()))

    def __post_init__(self) -> None:
        root_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sigstore.local"),
                               x509.NameAttribute(NameOID.COMMON_NAME, self.name)])
        intermediate_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sigstore.local"),
                                       x509.NameAttribute(NameOID.COMMON_NAME, f"{self.name}-intermediate")])
        ca_usage = x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                 data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                                 encipher_only=False, decipher_only=False)
        valid_until = self.not_before + timedelta(days=3650)
        root_builder = (x509.CertificateBuilder().subject_name(root_name).issuer_name(root_name)
                        .public_key(self.root_key.public_key()).serial_number(x509.random_serial_number())
                        .not_valid_before(self.not_before).not_valid_after(valid_until)
                        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
                        .add_extension(ca_usage, critical=True))
        self.root = _ski_aki(root_builder, self.root_key.public_key(), self.root_key.public_key()).sign(
            self.root_key, hashes.SHA384())
        intermediate_builder = (x509.CertificateBuilder().subject_name(intermediate_name).issuer_name(root_name)
                                .public_key(self.intermediate_key.public_key())
                                .serial_number(x509.random_serial_number())
                                .not_valid_before(self.not_before).not_valid_after(valid_until)
                                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                                .add_extension(ca_usage, critical=True)
                                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]),
                                               critical=False))
        self.intermediate = _ski_aki(intermediate_builder, self.intermediate_key.public_key(),
                                     self.root_key.public_key()).sign(self.root_key, hashes.SHA384())

    def trusted_root_entry(self) -> dict[str, Any]:
        return {"subject": {"organization": "sigstore.local", "commonName": self.name},
                "uri": f"https://{self.name}.invalid",
                "certChain": {"certificates": [{"rawBytes": b64(cert.public_bytes(serialization.Encoding.DER))}
                                               for cert in (self.intermediate, self.root)]},
                "validFor": {"start": rfc3339(self.not_before)}}


@dataclass
class LocalLog:
    """A transparency log key (Rekor-like for entries, CTFE-like for SCTs) and its place in a trusted root."""

    name: str
    not_before: datetime = SIGNED_AT - timedelta(days=30)
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))

    @property
    def log_id(self) -> bytes:
        return key_id(self.key.public_key())

    def sign(self, data: bytes) -> bytes:
        return self.key.sign(data, ec.ECDSA(hashes.SHA256()))

    def trusted_root_entry(self) -> dict[str, Any]:
        return {"baseUrl": f"https://{self.name}.invalid", "hashAlgorithm": "SHA2_256",
                "publicKey": {"rawBytes": b64(spki_der(self.key.public_key())),
                              "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                              "validFor": {"start": rfc3339(self.not_before)}},
                "logId": {"keyId": b64(self.log_id)}}


def _tls_vector(data: bytes, length_bytes: int) -> bytes:
    return len(data).to_bytes(length_bytes, "big") + data


def _sct(ct_log: LocalLog, issuer_key: ec.EllipticCurvePublicKey, tbs_precertificate: bytes,
         timestamp: datetime) -> bytes:
    """An RFC 6962 SCT for a precertificate entry, TLS-encoded."""
    millis = int(timestamp.timestamp() * 1000)
    signed = (struct.pack("!BBQH", 0, 0, millis, 1) + key_id(issuer_key)
              + _tls_vector(tbs_precertificate, 3) + _tls_vector(b"", 2))
    signature = ct_log.sign(signed)
    # version v1, log id, timestamp, no extensions, digitally-signed(sha256=4, ecdsa=3, signature)
    return (struct.pack("!B", 0) + ct_log.log_id + struct.pack("!Q", millis) + _tls_vector(b"", 2)
            + struct.pack("!BB", 4, 3) + _tls_vector(signature, 2))


def issue_certificate(ca: LocalCA, ct_log: LocalLog, signing_key: ec.EllipticCurvePrivateKey, subject: str,
                      issuer: str, not_before: datetime, *, legacy_issuer_only: bool = False,
                      key_usage: bool = True) -> x509.Certificate:
    """A Fulcio-shaped certificate: empty subject, critical SAN (email or URI), code signing, the OIDC issuer
    extensions, and one embedded SCT over the precertificate (the same TBS without the SCT list)."""
    san: x509.GeneralName = (x509.RFC822Name(subject) if "@" in subject and "://" not in subject
                             else x509.UniformResourceIdentifier(subject))
    builder = (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(ca.intermediate.subject)
               .public_key(signing_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(not_before).not_valid_after(not_before + CERT_LIFETIME))
    if key_usage:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                          encipher_only=False, decipher_only=False), critical=True)
    builder = (builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
               .add_extension(x509.SubjectAlternativeName([san]), critical=True)
               .add_extension(x509.UnrecognizedExtension(OIDC_ISSUER_LEGACY, issuer.encode()), critical=False))
    if not legacy_issuer_only:
        builder = builder.add_extension(x509.UnrecognizedExtension(OIDC_ISSUER_V2, asn1.encode_der(issuer)),
                                        critical=False)
    builder = _ski_aki(builder, signing_key.public_key(), ca.intermediate_key.public_key())
    precertificate = builder.sign(ca.intermediate_key, hashes.SHA256())
    sct = _sct(ct_log, ca.intermediate_key.public_key(), precertificate.tbs_certificate_bytes, not_before)
    sct_list = _tls_vector(_tls_vector(sct, 2), 2)
    # The extension's value is an OCTET STRING holding the TLS-encoded list: 0x04, DER length, content.
    certificate = builder.add_extension(
        x509.UnrecognizedExtension(SCT_LIST, b"\x04" + _der_length(len(sct_list)) + sct_list),
        critical=False).sign(ca.intermediate_key, hashes.SHA256())
    assert certificate.tbs_precertificate_bytes == precertificate.tbs_certificate_bytes
    return certificate


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    encoded = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(encoded)]) + encoded


def signed_note(log: LocalLog, origin: str, size: int, root: bytes) -> str:
    """A Rekor v1 checkpoint: the note text, a blank line, and ``— <name> base64(key hint || ECDSA signature)``
    where the key hint is the first 4 bytes of the log id."""
    text = f"{origin}\n{size}\n{b64(root)}\n"
    signature = log.sign(text.encode())
    return f"{text}\n\u2014 {origin.split(' ')[0]} {b64(log.log_id[:4] + signature)}\n"


@dataclass
class LocalTileLog:
    """A Rekor v2-like log: Ed25519 C2SP checkpoints, no integration time, no signed entry timestamp."""

    origin: str = "local-rekor-v2.invalid"
    not_before: datetime = SIGNED_AT - timedelta(days=30)
    key: ed25519.Ed25519PrivateKey = field(default_factory=ed25519.Ed25519PrivateKey.generate)

    @property
    def key_id(self) -> bytes:
        """C2SP signed-note key id of an Ed25519 key: SHA-256(name || 0x0A || 0x01 || key); notes carry [:4]."""
        raw = self.key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return hashlib.sha256(self.origin.encode() + b"\n\x01" + raw).digest()

    def checkpoint(self, size: int, root: bytes) -> str:
        text = f"{self.origin}\n{size}\n{b64(root)}\n"
        return f"{text}\n\u2014 {self.origin} {b64(self.key_id[:4] + self.key.sign(text.encode()))}\n"

    def trusted_root_entry(self) -> dict[str, Any]:
        spki = self.key.public_key().public_bytes(serialization.Encoding.DER,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo)
        return {"baseUrl": f"https://{self.origin}", "hashAlgorithm": "SHA2_256",
                "publicKey": {"rawBytes": b64(spki), "keyDetails": "PKIX_ED25519",
                              "validFor": {"start": rfc3339(self.not_before)}},
                "logId": {"keyId": b64(self.key_id)}, "checkpointKeyId": {"keyId": b64(self.key_id)}}


def _tree_with(leaf: bytes) -> tuple[int, int, bytes, list[bytes]]:
    """The leaf at index 4 of a 7-leaf tree, so the inclusion proof has hashes to check: index, size, root, proof."""
    leaves = [merkle.leaf_hash(f"other entry {i}".encode()) for i in range(6)]
    leaves.insert(4, merkle.leaf_hash(leaf))
    return 4, len(leaves), merkle.root_from_leaf_hashes(leaves), merkle.inclusion_proof(leaves, 4)


@dataclass
class LocalSigstore:
    """A CA, a CT log and a transparency log that together make a trusted root, and sign blobs keylessly."""

    ca: LocalCA = field(default_factory=LocalCA)
    ct_log: LocalLog = field(default_factory=lambda: LocalLog("local-ctfe"))
    log: LocalLog = field(default_factory=lambda: LocalLog("local-rekor"))
    tile_log: LocalTileLog = field(default_factory=LocalTileLog)
    tsa: LocalTSA = field(default_factory=LocalTSA)

    def trusted_root(self) -> dict[str, Any]:
        return {"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
                "tlogs": [self.log.trusted_root_entry(), self.tile_log.trusted_root_entry()],
                "certificateAuthorities": [self.ca.trusted_root_entry()],
                "ctlogs": [self.ct_log.trusted_root_entry()],
                "timestampAuthorities": [self.tsa.trusted_root_entry()]}

    def write_trusted_root(self, path: Path) -> Path:
        path.write_text(json.dumps(self.trusted_root(), indent=2) + "\n")
        return path

    def sign(self, data: bytes, subject: str, issuer: str, *, signed_at: datetime = SIGNED_AT,
             ca: LocalCA | None = None, ct_log: LocalLog | None = None, log: LocalLog | None = None,
             integrated_after: timedelta = timedelta(seconds=2), legacy_issuer_only: bool = False,
             key_usage: bool = True, signing_key: ec.EllipticCurvePrivateKey | None = None) -> bytes:
        """A v0.3 bundle (JSON bytes) for ``data``; ``ca``/``ct_log``/``log`` replace this instance's own parts;
        ``signing_key`` is the certificate's key (default: a fresh ephemeral one, as with Fulcio)."""
        ca, ct_log, log = ca or self.ca, ct_log or self.ct_log, log or self.log
        signing_key = signing_key or ec.generate_private_key(ec.SECP256R1())
        certificate = issue_certificate(ca, ct_log, signing_key, subject, issuer, signed_at,
                                        legacy_issuer_only=legacy_issuer_only, key_usage=key_usage)
        digest = hashlib.sha256(data).digest()
        signature = signing_key.sign(data, ec.ECDSA(hashes.SHA256()))
        cert_pem = certificate.public_bytes(serialization.Encoding.PEM)
        body = rfc8785.dumps({"apiVersion": "0.0.1", "kind": "hashedrekord",
                              "spec": {"data": {"hash": {"algorithm": "sha256", "value": digest.hex()}},
                                       "signature": {"content": b64(signature),
                                                     "publicKey": {"content": b64(cert_pem)}}}})
        return json.dumps(self.log_entry_bundle(log, body, certificate, digest, signature,
                                                signed_at + integrated_after), indent=2).encode()

    @staticmethod
    def log_entry_bundle(log: LocalLog, body: bytes, certificate: x509.Certificate, digest: bytes,
                         signature: bytes, integrated_at: datetime) -> dict[str, Any]:
        index, size, root, proof = _tree_with(body)
        integrated_time = int(integrated_at.timestamp())
        promise = rfc8785.dumps({"body": b64(body), "integratedTime": integrated_time,
                                 "logID": log.log_id.hex(), "logIndex": index})
        return {
            "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "verificationMaterial": {
                "certificate": {"rawBytes": b64(certificate.public_bytes(serialization.Encoding.DER))},
                "tlogEntries": [{
                    "logIndex": str(index), "logId": {"keyId": b64(log.log_id)},
                    "kindVersion": {"kind": "hashedrekord", "version": "0.0.1"},
                    "integratedTime": str(integrated_time),
                    "inclusionPromise": {"signedEntryTimestamp": b64(log.sign(promise))},
                    "inclusionProof": {"logIndex": str(index), "rootHash": b64(root), "treeSize": str(size),
                                       "hashes": [b64(h) for h in proof],
                                       "checkpoint": {"envelope": signed_note(
                                           log, f"{log.name}.invalid - 1193050959916656506", size, root)}},
                    "canonicalizedBody": b64(body)}]},
            "messageSignature": {"messageDigest": {"algorithm": "SHA2_256", "digest": b64(digest)},
                                 "signature": b64(signature)}}

    def sign_v2(self, data: bytes, subject: str, issuer: str, *, signed_at: datetime = SIGNED_AT,
                tsa: LocalTSA | None = None, tile_log: LocalTileLog | None = None,
                timestamped_after: timedelta = timedelta(seconds=1)) -> bytes:
        """A v0.3 bundle as a Rekor v2 log and a TSA make it: a ``hashedrekord`` 0.0.2 entry with an inclusion
        proof and a C2SP checkpoint, no integration time, and an RFC 3161 timestamp over the signature."""
        tsa, tile_log = tsa or self.tsa, tile_log or self.tile_log
        signing_key = ec.generate_private_key(ec.SECP256R1())
        certificate = issue_certificate(self.ca, self.ct_log, signing_key, subject, issuer, signed_at)
        digest = hashlib.sha256(data).digest()
        signature = signing_key.sign(data, ec.ECDSA(hashes.SHA256()))
        body = rfc8785.dumps({"kind": "hashedrekord", "apiVersion": "0.0.2", "spec": {"hashedRekordV002": {
            "data": {"algorithm": "SHA2_256", "digest": b64(digest)},
            "signature": {"content": b64(signature), "verifier": {
                "x509Certificate": {"rawBytes": b64(certificate.public_bytes(serialization.Encoding.DER))},
                "keyDetails": "PKIX_ECDSA_P256_SHA_256"}}}}})
        index, size, root, proof = _tree_with(body)
        return json.dumps({
            "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "verificationMaterial": {
                "certificate": {"rawBytes": b64(certificate.public_bytes(serialization.Encoding.DER))},
                "tlogEntries": [{
                    "logIndex": str(index), "logId": {"keyId": b64(tile_log.key_id)},
                    "kindVersion": {"kind": "hashedrekord", "version": "0.0.2"},
                    "inclusionProof": {"logIndex": str(index), "rootHash": b64(root), "treeSize": str(size),
                                       "hashes": [b64(h) for h in proof],
                                       "checkpoint": {"envelope": tile_log.checkpoint(size, root)}},
                    "canonicalizedBody": b64(body)}],
                "timestampVerificationData": {"rfc3161Timestamps": [
                    {"signedTimestamp": b64(tsa.timestamp(signature, signed_at + timestamped_after))}]}},
            "messageSignature": {"messageDigest": {"algorithm": "SHA2_256", "digest": b64(digest)},
                                 "signature": b64(signature)}}, indent=2).encode()
