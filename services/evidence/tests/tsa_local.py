"""A local RFC 3161 timestamp authority, minted with `cryptography` and a few lines of DER.

Rekor v2 logs give no integration time; a Sigstore bundle then carries a signed timestamp from a TSA the
verifier's trusted root names. `LocalTSA.timestamp` answers with a ``TimeStampResp`` (RFC 3161) whose token is a
CMS SignedData over a ``TSTInfo``, signed by a certificate with the critical ``timeStamping`` EKU, carrying the
ESS ``signingCertificateV2`` attribute (RFC 5816) as TSAs do.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SHA256 = "2.16.840.1.101.3.4.2.1"
ECDSA_WITH_SHA256 = "1.2.840.10045.4.3.2"
SIGNED_DATA = "1.2.840.113549.1.7.2"
TST_INFO = "1.2.840.113549.1.9.16.1.4"
CONTENT_TYPE = "1.2.840.113549.1.9.3"
MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
SIGNING_CERTIFICATE_V2 = "1.2.840.113549.1.9.16.2.47"
POLICY = "1.3.6.1.4.1.57264.2"


def _length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    encoded = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(encoded)]) + encoded


def tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _length(len(content)) + content


def sequence(*items: bytes) -> bytes:
    return tlv(0x30, b"".join(items))


def set_of(*items: bytes) -> bytes:
    return tlv(0x31, b"".join(sorted(items)))  # DER orders a SET OF by encoding


def integer(value: int) -> bytes:
    return tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))  # non-negative; a leading 0 keeps the sign


def oid(dotted: str) -> bytes:
    first, second, *rest = (int(arc) for arc in dotted.split("."))
    encoded = bytearray([40 * first + second])
    for arc in rest:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        encoded.extend(reversed(chunk))
    return tlv(0x06, bytes(encoded))


def octets(data: bytes) -> bytes:
    return tlv(0x04, data)


def generalized_time(moment: datetime) -> bytes:
    return tlv(0x18, moment.astimezone(UTC).strftime("%Y%m%d%H%M%SZ").encode())


def tagged(number: int, content: bytes) -> bytes:
    """A constructed context tag [number]: EXPLICIT around one element, or IMPLICIT over a SET's contents."""
    return tlv(0xA0 | number, content)


def _attribute(kind: str, value: bytes) -> bytes:
    return sequence(oid(kind), set_of(value))


@dataclass
class LocalTSA:
    name: str = "local-tsa"
    not_before: datetime = datetime(2026, 5, 1, tzinfo=UTC)
    root_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP384R1()))
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))

    def __post_init__(self) -> None:
        root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{self.name}-root")])
        valid_until = self.not_before + timedelta(days=3650)
        self.root = (x509.CertificateBuilder().subject_name(root_name).issuer_name(root_name)
                     .public_key(self.root_key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(self.not_before).not_valid_after(valid_until)
                     .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                     .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                                  key_encipherment=False, data_encipherment=False,
                                                  key_agreement=False, key_cert_sign=True, crl_sign=True,
                                                  encipher_only=False, decipher_only=False), critical=True)
                     .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.root_key.public_key()),
                                    critical=False)
                     .sign(self.root_key, hashes.SHA384()))
        self.certificate = (
            x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.name)]))
            .issuer_name(root_name).public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(self.not_before).not_valid_after(valid_until)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.root_key.public_key()),
                           critical=False)
            .sign(self.root_key, hashes.SHA384()))

    def trusted_root_entry(self) -> dict[str, Any]:
        return {"subject": {"organization": "sigstore.local", "commonName": self.name},
                "uri": f"https://{self.name}.invalid/api/v1/timestamp",
                "certChain": {"certificates": [
                    {"rawBytes": base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()}
                    for cert in (self.certificate, self.root)]},
                "validFor": {"start": self.not_before.strftime("%Y-%m-%dT%H:%M:%SZ")}}

    def timestamp(self, message: bytes, at: datetime, serial: int = 1) -> bytes:
        """A granted TimeStampResp (DER) over SHA-256(message), generated at ``at``."""
        sha256 = sequence(oid(SHA256))
        tst_info = sequence(integer(1), oid(POLICY), sequence(sha256, octets(hashlib.sha256(message).digest())),
                            integer(serial), generalized_time(at))
        certificate_der = self.certificate.public_bytes(serialization.Encoding.DER)
        attributes = set_of(
            _attribute(CONTENT_TYPE, oid(TST_INFO)),
            _attribute(MESSAGE_DIGEST, octets(hashlib.sha256(tst_info).digest())),
            _attribute(SIGNING_CERTIFICATE_V2, sequence(sequence(sequence(
                octets(hashlib.sha256(certificate_der).digest()))))))
        signature = self.key.sign(attributes, ec.ECDSA(hashes.SHA256()))  # over the attributes as a SET
        signer_info = sequence(
            integer(1), sequence(self.certificate.issuer.public_bytes(), integer(self.certificate.serial_number)),
            sha256, tagged(0, _contents(attributes)),
            sequence(oid(ECDSA_WITH_SHA256)), octets(signature))
        signed_data = sequence(integer(3), set_of(sha256),
                               sequence(oid(TST_INFO), tagged(0, octets(tst_info))),
                               tagged(0, certificate_der), set_of(signer_info))
        token = sequence(oid(SIGNED_DATA), tagged(0, signed_data))
        return sequence(sequence(integer(0)), token)


def _contents(encoded: bytes) -> bytes:
    """The contents of a DER TLV (what an IMPLICIT tag re-wraps)."""
    length_byte = encoded[1]
    header = 2 if length_byte < 0x80 else 2 + (length_byte & 0x7F)
    return encoded[header:]
