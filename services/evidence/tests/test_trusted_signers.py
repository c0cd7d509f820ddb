"""The trusted-signers document and picking a bundle's signer from it (no infrastructure)."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from ig_evidence.bundle.signer import identify_signer
from ig_evidence.domain import signatures
from ig_evidence.domain.trusted_signers import (
    SignerNotTrusted,
    TrustedSignersError,
    key_id,
    key_id_from_hint,
    parse_trusted_signers,
)

ALPHA = ec.generate_private_key(ec.SECP256R1())
BETA = ec.generate_private_key(ec.SECP256R1())
STRANGER = ec.generate_private_key(ec.SECP256R1())


def pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


def no_files(name: str) -> bytes:
    raise FileNotFoundError(2, "No such file or directory")


DOCUMENT = {"tenants": {"alpha": [{"name": "alpha key", "publicKey": pem(ALPHA)}],
                        "beta": [{"name": "beta key", "publicKey": pem(BETA)},
                                 {"name": "ci", "keyless": {"issuer": "https://issuer.example",
                                                            "subjectRegexp": "https://ci/.*@refs/tags/v.*"}}]},
            "keylessTrustedRoot": "trusted_root.json"}


def test_key_id_is_the_sha256_of_the_spki_and_matches_a_sigstore_hint() -> None:
    der = ALPHA.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    assert key_id(ALPHA.public_key()) == hashlib.sha256(der).hexdigest()
    assert key_id_from_hint(signatures.public_key_hint(ALPHA.public_key())) == key_id(ALPHA.public_key())
    assert key_id_from_hint("not base64!") is None and key_id_from_hint(base64.b64encode(b"short").decode()) is None


def test_a_document_pins_keys_and_identities_per_tenant() -> None:
    trusted = parse_trusted_signers(DOCUMENT, no_files)
    assert [k.key_id for k in trusted.of("alpha").keys] == [key_id(ALPHA.public_key())]
    assert trusted.of("beta").identities[0].matches("https://issuer.example", "https://ci/release.yml@refs/tags/v1")
    assert trusted.of("gamma").keys == () and trusted.of("gamma").describe() == "none"
    assert trusted.pinned_key("beta", key_id(ALPHA.public_key())) is None


@pytest.mark.parametrize(("issuer", "subject", "matches"), [
    ("https://issuer.example", "https://ci/release.yml@refs/tags/v1", True),
    ("https://other.example", "https://ci/release.yml@refs/tags/v1", False),
    ("https://issuer.example", "https://ci/release.yml@refs/heads/main", False),
    # matched whole, as cosign does: a prefix match is not enough
    ("https://issuer.example", "evil https://ci/release.yml@refs/tags/v1", False),
])
def test_a_keyless_identity_matches_issuer_exactly_and_subject_whole(issuer: str, subject: str,
                                                                     matches: bool) -> None:
    identity = parse_trusted_signers(DOCUMENT, no_files).of("beta").identities[0]
    assert identity.matches(issuer, subject) is matches


def _with(tenant_entries: Any, **top: Any) -> dict[str, Any]:
    return {"tenants": {"alpha": tenant_entries}, **top}


@pytest.mark.parametrize(("document", "message"), [
    ({}, "tenants: required"),
    ({"tenants": {"Alpha!": [{"name": "k", "publicKey": pem(ALPHA)}]}}, "tenants.Alpha!: not a tenant name"),
    (_with([]), "tenants.alpha: a non-empty list of signers"),
    (_with([{"publicKey": pem(ALPHA)}]), "tenants.alpha[0].name: required"),
    (_with([{"name": "k", "publicKey": "not a key"}]), "tenants.alpha[0]: not a PEM public key"),
    (_with([{"name": "k", "publicKeyPath": "missing.pub"}]), "tenants.alpha[0].publicKeyPath: cannot read"),
    (_with([{"name": "k", "publicKey": pem(ALPHA), "keyId": "00" * 32}]), "tenants.alpha[0].keyId: '0000"),
    (_with([{"name": "k", "publicKey": pem(ec.generate_private_key(ec.SECP384R1()))}]), "must be ECDSA P-256"),
    (_with([{"name": "k", "keyless": {"issuer": "x", "subjectRegexp": "("}}], keylessTrustedRoot="r.json"),
     "tenants.alpha[0].keyless.subjectRegexp"),
    (_with([{"name": "k", "keyless": {"issuer": "x", "subjectRegexp": ".*"}}]),
     "keylessTrustedRoot: required when a tenant trusts a keyless identity"),
])
def test_a_bad_document_is_refused_naming_the_entry(document: Any, message: str) -> None:
    with pytest.raises(TrustedSignersError) as refused:
        parse_trusted_signers(document, no_files)
    assert message in str(refused.value)


def signed_metadata(key: ec.EllipticCurvePrivateKey, *, carried: ec.EllipticCurvePrivateKey | None = None
                    ) -> dict[str, bytes]:
    manifest = json.dumps({"release": "v1.2.1"}).encode()
    signature = signatures.sign(key, manifest)
    return {"manifest.json": manifest, "manifest.json.sig": base64.b64encode(signature),
            "manifest.sigstore.json": json.dumps(signatures.sigstore_bundle(key.public_key(), manifest,
                                                                            signature)).encode(),
            "cosign.pub": pem(carried or key).encode()}


def test_the_signer_is_the_pinned_key_whose_signature_verifies() -> None:
    trusted = parse_trusted_signers(DOCUMENT, no_files)
    signer = identify_signer(signed_metadata(BETA), trusted.of("beta"), "beta")
    assert (signer.name, signer.key_id) == ("beta key", key_id(BETA.public_key()))


@pytest.mark.parametrize(("signed_by", "tenant", "named"), [
    (STRANGER, "alpha", key_id(STRANGER.public_key())),  # pinned by nobody
    (BETA, "alpha", key_id(BETA.public_key())),  # pinned, for another tenant
    (ALPHA, "gamma", key_id(ALPHA.public_key())),  # a tenant that pins nobody
])
def test_an_unpinned_signer_is_refused_naming_its_key_id(signed_by: ec.EllipticCurvePrivateKey, tenant: str,
                                                         named: str) -> None:
    trusted = parse_trusted_signers(DOCUMENT, no_files)
    with pytest.raises(SignerNotTrusted) as refused:
        identify_signer(signed_metadata(signed_by), trusted.of(tenant), tenant)
    assert named in str(refused.value) and f"not trusted for tenant {tenant!r}" in str(refused.value)


def test_a_carried_key_counts_for_nothing() -> None:
    """A stranger's signature with alpha's key planted as cosign.pub is still the stranger's."""
    trusted = parse_trusted_signers(DOCUMENT, no_files)
    metadata = signed_metadata(STRANGER, carried=ALPHA)
    with pytest.raises(SignerNotTrusted):
        identify_signer(metadata, trusted.of("alpha"), "alpha")
