"""Sigstore keyless verification of a signed blob (the release manifest), offline, with sigstore-python.

A keyless signature is trusted only through roots the verifier pins: a Sigstore ``TrustedRoot`` file (Fulcio CAs,
Rekor logs, CT logs, timestamp authorities; protobuf-specs JSON) and an identity policy (the OIDC issuer the
certificate must name, and a regular expression the certificate's subject must match as a whole). Nothing in the
bundle is trusted by itself, and nothing is fetched: no TUF refresh, no call to Rekor.

sigstore-python's ``Verifier.verify_artifact`` does the cryptography (chain to a Fulcio CA at the log's
integration time or a TSA's time, the embedded SCT, the Rekor inclusion proof and its signed checkpoint, the
signed entry timestamp, the signature over the data, the log entry matching the signature). This module adds the
identity policy with cosign's semantics and turns each refusal into a :class:`KeylessRefused` naming what failed.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat import asn1
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from sigstore.errors import CertValidationError, Error, VerificationError
from sigstore.models import Bundle, InvalidBundle, TrustedRoot
from sigstore.verify import Verifier

# Fulcio's certificate extensions (github.com/sigstore/fulcio docs/oid-info.md): the issuer as a DER UTF8String
# (current), or as raw bytes (deprecated, still set by Fulcio and read by cosign when the current one is absent).
OIDC_ISSUER_V2 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
OIDC_ISSUER_LEGACY = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
# A SAN otherName Fulcio uses for identities that are neither an email nor a URI (e.g. a username).
FULCIO_OTHERNAME = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.7")


class KeylessRefused(ValueError):
    """The keyless signature is not trusted; the message says which check failed."""


@dataclass(frozen=True)
class KeylessSigner:
    """Who signed, as the verified Fulcio certificate says."""

    issuer: str
    subject: str
    certificate_sha256: str  # hex SHA-256 of the signing certificate's DER
    public_key: ec.EllipticCurvePublicKey  # the certificate's: every other signature in the bundle must be by it


@dataclass(frozen=True)
class IdentityPolicy:
    """cosign's ``--certificate-oidc-issuer`` and ``--certificate-identity-regexp``, except that the regexp must
    match the whole subject (cosign's Go regexp matches anywhere unless anchored; a whole match cannot be widened by
    a forgotten ``^``/``$``)."""

    issuer: str
    subject_regexp: str

    def __post_init__(self) -> None:
        if not self.issuer:
            raise ValueError("identity policy: issuer must not be empty")
        if not self.subject_regexp:
            raise ValueError("identity policy: subject_regexp must not be empty")
        try:
            re.compile(self.subject_regexp)
        except re.error as error:
            raise ValueError(f"identity policy: subject_regexp {self.subject_regexp!r} is not a valid "
                             f"regular expression: {error}") from error


class _PolicyRefused(VerificationError):
    """Raised inside sigstore-python's verification so that a policy refusal is told apart from the rest."""


def certificate_issuer(certificate: x509.Certificate) -> str | None:
    extensions = certificate.extensions
    try:
        v2 = extensions.get_extension_for_oid(OIDC_ISSUER_V2).value
        return asn1.decode_der(str, v2.value)  # type: ignore[attr-defined]
    except x509.ExtensionNotFound:
        pass
    try:
        legacy = extensions.get_extension_for_oid(OIDC_ISSUER_LEGACY).value
        return bytes(legacy.value).decode()  # type: ignore[attr-defined]
    except x509.ExtensionNotFound:
        return None


def certificate_subjects(certificate: x509.Certificate) -> list[str]:
    """The identities Fulcio writes into the SAN: email, URI, or its own otherName."""
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    subjects: list[str] = [*san.get_values_for_type(x509.RFC822Name),
                           *san.get_values_for_type(x509.UniformResourceIdentifier)]
    for other in san.get_values_for_type(x509.OtherName):
        if other.type_id == FULCIO_OTHERNAME:
            subjects.append(asn1.decode_der(str, other.value))
    return subjects


class _IdentityCheck:
    """A sigstore-python VerificationPolicy; remembers the subject that matched for the result."""

    def __init__(self, policy: IdentityPolicy) -> None:
        self._policy = policy
        self._pattern = re.compile(policy.subject_regexp)
        self.matched_subject: str | None = None

    def verify(self, cert: x509.Certificate) -> None:
        issuer = certificate_issuer(cert)
        if issuer is None:
            raise _PolicyRefused("the signing certificate names no OIDC issuer (extension "
                                 f"{OIDC_ISSUER_V2.dotted_string} or {OIDC_ISSUER_LEGACY.dotted_string})")
        if issuer != self._policy.issuer:
            raise _PolicyRefused(f"OIDC issuer mismatch: the certificate's issuer is '{issuer}', "
                                 f"the trusted issuer is '{self._policy.issuer}'")
        subjects = certificate_subjects(cert)
        for subject in subjects:
            if self._pattern.fullmatch(subject):
                self.matched_subject = subject
                return
        shown = ", ".join(f"'{subject}'" for subject in subjects) or "(none)"
        raise _PolicyRefused(f"subject mismatch: the certificate's subject {shown} does not match the trusted "
                             f"subject regexp '{self._policy.subject_regexp}' (the whole subject must match)")


def load_trusted_root(path: Path) -> TrustedRoot:
    """Read a Sigstore TrustedRoot (protobuf-specs JSON) from a file; a bad file is a ValueError naming it."""
    try:
        return TrustedRoot.from_file(str(path))
    except (OSError, ValueError, Error) as error:
        raise ValueError(f"trusted root {path}: cannot be read as a Sigstore TrustedRoot: {error}") from error


class KeylessVerifier:
    """Verifies keyless bundles against one trusted root; build it once, use it for every bundle."""

    def __init__(self, trusted_root: TrustedRoot, source: str = "the trusted root") -> None:
        try:
            self._verifier = Verifier(trusted_root=trusted_root)
        except Error as error:
            raise ValueError(f"{source}: unusable for keyless verification: {error}") from error
        self._source = source

    @classmethod
    def from_file(cls, path: Path) -> KeylessVerifier:
        return cls(load_trusted_root(path), source=f"trusted root {path}")

    def verify(self, sigstore_bundle_json: bytes, signed_data: bytes, policy: IdentityPolicy) -> KeylessSigner:
        try:
            bundle = Bundle.from_json(sigstore_bundle_json)
        except (InvalidBundle, ValueError) as error:
            if _is_legacy_cosign_bundle(sigstore_bundle_json):
                raise KeylessRefused("keyless bundle refused: this is cosign's legacy bundle format (cosign 2.x "
                                     "sign-blob without --new-bundle-format), not a Sigstore bundle; sign with "
                                     "--new-bundle-format") from error
            raise KeylessRefused(f"keyless bundle refused: not a valid Sigstore bundle with one transparency log "
                                 f"entry: {_shorten(str(error))}") from error
        check = _IdentityCheck(policy)
        try:
            self._verifier.verify_artifact(signed_data, bundle, check)
        except _PolicyRefused as error:
            raise KeylessRefused(f"keyless bundle refused: {error}") from error
        except CertValidationError as error:
            if "not valid at validation time" in str(error):
                raise KeylessRefused(f"keyless bundle refused: the signing certificate was not valid at the signing "
                                     f"time the log or a timestamp authority vouches for ({error})") from error
            raise KeylessRefused(f"keyless bundle refused: untrusted certificate authority: the signing "
                                 f"certificate does not chain to a Fulcio CA of {self._source} ({error})") from error
        except (Error, ValueError) as error:
            raise KeylessRefused(f"keyless bundle refused: {_explain(_shorten(str(error)))}") from error
        except Exception as error:  # untrusted input: whatever else breaks, it is not verified
            raise KeylessRefused(f"keyless bundle refused: not verifiable ({type(error).__name__}: "
                                 f"{_shorten(str(error))})") from error
        issuer = certificate_issuer(bundle.signing_certificate)
        if check.matched_subject is None or issuer is None:  # the policy ran and passed, or we would not be here
            raise KeylessRefused("keyless bundle refused: the identity policy was not applied")
        public_key = bundle.signing_certificate.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise KeylessRefused("keyless bundle refused: the signing certificate's key is not ECDSA")
        fingerprint = hashlib.sha256(bundle.signing_certificate.public_bytes(Encoding.DER)).hexdigest()
        return KeylessSigner(issuer=issuer, subject=check.matched_subject, certificate_sha256=fingerprint,
                             public_key=public_key)


def _is_legacy_cosign_bundle(document: bytes) -> bool:
    try:
        parsed = json.loads(document)
    except ValueError:
        return False
    return isinstance(parsed, dict) and "rekorBundle" in parsed and "mediaType" not in parsed


def _shorten(message: str, limit: int = 500) -> str:
    """Some of sigstore-python's messages embed whole proofs; a refusal names the check, not every byte."""
    return message if len(message) <= limit else message[:limit] + "..."


def _explain(message: str) -> str:
    """sigstore-python's messages prefixed with the check they come from, in the terms of a trusted root."""
    if message.startswith("invalid log entry"):
        return f"transparency log entry not verified against the trusted root's logs: {message}"
    if "SCT" in message:
        return f"certificate transparency: the SCT is not signed by a CT log of the trusted root: {message}"
    if message in ("Signature is invalid for input", "Bundle message digest mismatch"):
        return f"digest mismatch: the signature does not cover these bytes ({message})"
    if "inconsistent with other materials" in message or message.startswith("Expected entry type"):
        return f"transparency log entry does not record this signature and certificate: {message}"
    if "sources of verified time" in message:
        return ("no trusted signing time: neither an integration time vouched for by a log of the trusted root nor "
                f"a timestamp from one of its timestamp authorities ({message})")
    if "expired at time of signing" in message:
        return f"the signing certificate was not valid at the signing time: {message}"
    return message


def verify_keyless(sigstore_bundle_json: bytes, signed_data: bytes, trusted_root: Path, issuer: str,
                   subject_regexp: str) -> KeylessSigner:
    """One-shot form of :class:`KeylessVerifier` (it reads the trusted root file on every call)."""
    return KeylessVerifier.from_file(trusted_root).verify(sigstore_bundle_json, signed_data,
                                                           IdentityPolicy(issuer=issuer, subject_regexp=subject_regexp))
