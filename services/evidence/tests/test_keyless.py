"""Keyless (Sigstore) verification of a manifest, offline, against a locally minted trusted root.

The bundles come from `sigstore_local`, a Fulcio-like CA, CT log and Rekor-like log made with `cryptography`; the
same bundles are checked by the real cosign binary at the end, so the local Sigstore is not shaped to our verifier.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from ig_evidence.bundle.keyless import (
    IdentityPolicy,
    KeylessRefused,
    KeylessSigner,
    KeylessVerifier,
    load_trusted_root,
    verify_keyless,
)

from .sigstore_local import LocalCA, LocalLog, LocalSigstore, LocalTileLog
from .tsa_local import LocalTSA

ISSUER = "https://token.actions.githubusercontent.com"
SUBJECT = "https://github.com/acme/mc/.github/workflows/release.yml@refs/tags/v1.2.1"
SUBJECT_REGEXP = r"https://github\.com/acme/mc/\.github/workflows/release\.yml@refs/tags/v.*"
MANIFEST = b'{"release":"v1.2.1","schemaVersion":"ig.evidence.manifest/v1"}'


@pytest.fixture(scope="module")
def sigstore() -> LocalSigstore:
    return LocalSigstore()


@pytest.fixture(scope="module")
def trusted_root(sigstore: LocalSigstore, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sigstore.write_trusted_root(tmp_path_factory.mktemp("sigstore") / "trusted_root.json")


@pytest.fixture(scope="module")
def verifier(trusted_root: Path) -> KeylessVerifier:
    return KeylessVerifier.from_file(trusted_root)


def signed_certificate(bundle: bytes) -> x509.Certificate:
    raw = json.loads(bundle)["verificationMaterial"]["certificate"]["rawBytes"]
    return x509.load_der_x509_certificate(base64.b64decode(raw))


def rekor_v1(sigstore: LocalSigstore) -> bytes:
    return sigstore.sign(MANIFEST, SUBJECT, ISSUER)


def rekor_v2_with_tsa(sigstore: LocalSigstore) -> bytes:
    return sigstore.sign_v2(MANIFEST, SUBJECT, ISSUER)


@pytest.mark.parametrize("make_bundle", [rekor_v1, rekor_v2_with_tsa])
def test_a_keyless_bundle_verifies_and_names_its_signer(sigstore: LocalSigstore, trusted_root: Path,
                                                        make_bundle: Callable[[LocalSigstore], bytes]) -> None:
    bundle = make_bundle(sigstore)
    signer = verify_keyless(bundle, MANIFEST, trusted_root, ISSUER, SUBJECT_REGEXP)
    certificate = signed_certificate(bundle)
    assert signer == KeylessSigner(issuer=ISSUER, subject=SUBJECT,
                                   certificate_sha256=hashlib.sha256(certificate.public_bytes(Encoding.DER)).hexdigest(),
                                   public_key=certificate.public_key())


@pytest.mark.parametrize("subject", ["release-bot@acme.example", SUBJECT])
def test_email_and_uri_subjects_and_the_legacy_issuer_extension_are_read(sigstore: LocalSigstore,
                                                                          verifier: KeylessVerifier,
                                                                          subject: str) -> None:
    # Fulcio writes the issuer twice (1.3.6.1.4.1.57264.1.8 and the older .1.1); older certificates only have .1.1.
    bundle = sigstore.sign(MANIFEST, subject, ISSUER, legacy_issuer_only=True)
    signer = verifier.verify(bundle, MANIFEST, IdentityPolicy(ISSUER, r"release-bot@acme\.example|" + SUBJECT_REGEXP))
    assert (signer.issuer, signer.subject) == (ISSUER, subject)


def test_verification_needs_no_network(sigstore: LocalSigstore, trusted_root: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = sigstore.sign(MANIFEST, SUBJECT, ISSUER)
    attempts: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(args)
        raise OSError("network use during offline verification")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    assert verify_keyless(bundle, MANIFEST, trusted_root, ISSUER, SUBJECT_REGEXP).subject == SUBJECT
    assert attempts == []


def edit_entry(bundle: bytes, change: Callable[[dict[str, Any]], None]) -> bytes:
    document = json.loads(bundle)
    change(document["verificationMaterial"]["tlogEntries"][0])
    return json.dumps(document).encode()


def drop_entries(bundle: bytes) -> bytes:
    document = json.loads(bundle)
    document["verificationMaterial"]["tlogEntries"] = []
    return json.dumps(document).encode()


def forge_proof(entry: dict[str, Any]) -> None:
    entry["inclusionProof"]["hashes"][0] = entry["inclusionProof"]["hashes"][1]


def move_integration_time(entry: dict[str, Any]) -> None:
    entry["integratedTime"] = str(int(entry["integratedTime"]) + 1)


def entry_of_another_signature(sigstore: LocalSigstore) -> bytes:
    # A genuine log entry, for another signing of other bytes: the log proves it, but it records another signature.
    bundle = json.loads(sigstore.sign(MANIFEST, SUBJECT, ISSUER))
    other = json.loads(sigstore.sign(b"another manifest", SUBJECT, ISSUER))
    bundle["verificationMaterial"]["tlogEntries"] = other["verificationMaterial"]["tlogEntries"]
    return json.dumps(bundle).encode()


def legacy_cosign_bundle(sigstore: LocalSigstore) -> bytes:
    # The shape cosign 2.x's sign-blob --bundle writes by default: signature, PEM certificate, Rekor's response.
    bundle = json.loads(sigstore.sign(MANIFEST, SUBJECT, ISSUER))
    entry = bundle["verificationMaterial"]["tlogEntries"][0]
    certificate = signed_certificate(json.dumps(bundle).encode()).public_bytes(Encoding.PEM)
    return json.dumps({
        "base64Signature": bundle["messageSignature"]["signature"], "cert": base64.b64encode(certificate).decode(),
        "rekorBundle": {"SignedEntryTimestamp": entry["inclusionPromise"]["signedEntryTimestamp"],
                        "Payload": {"body": entry["canonicalizedBody"], "integratedTime": int(entry["integratedTime"]),
                                    "logIndex": int(entry["logIndex"]),
                                    "logID": base64.b64decode(entry["logId"]["keyId"]).hex()}}}).encode()


@dataclass(frozen=True)
class Refusal:
    name: str
    bundle: Callable[[LocalSigstore], bytes]
    expected: tuple[str, ...]
    issuer: str = ISSUER
    subject_regexp: str = SUBJECT_REGEXP
    data: bytes = MANIFEST


REFUSALS = [
    Refusal("another issuer", lambda s: s.sign(MANIFEST, SUBJECT, "https://accounts.google.com"),
            ("OIDC issuer mismatch", "'https://accounts.google.com'", f"'{ISSUER}'")),
    Refusal("a policy naming another issuer", lambda s: s.sign(MANIFEST, SUBJECT, ISSUER),
            ("OIDC issuer mismatch",), issuer="https://gitlab.com"),
    Refusal("a subject outside the regexp",
            lambda s: s.sign(MANIFEST, "https://github.com/mallory/mc/.github/workflows/release.yml@refs/tags/v1",
                             ISSUER),
            ("subject mismatch", "mallory", SUBJECT_REGEXP)),
    Refusal("a regexp matching only a prefix of the subject", lambda s: s.sign(MANIFEST, SUBJECT, ISSUER),
            ("subject mismatch", "the whole subject must match"),
            subject_regexp=r"https://github\.com/acme/mc/\.github/workflows/release\.yml"),
    Refusal("a regexp matching only inside the subject (cosign would accept it)",
            lambda s: s.sign(MANIFEST, SUBJECT, ISSUER), ("subject mismatch",), subject_regexp="acme/mc"),
    Refusal("a certificate from a CA not in the trusted root",
            lambda s: s.sign(MANIFEST, SUBJECT, ISSUER, ca=LocalCA("rogue-fulcio")),
            ("untrusted certificate authority", "does not chain to a Fulcio CA")),
    Refusal("a certificate used after it expired",
            lambda s: s.sign(MANIFEST, SUBJECT, ISSUER, integrated_after=timedelta(minutes=11)),
            ("signing certificate was not valid at the signing time",)),
    Refusal("an SCT from a CT log not in the trusted root",
            lambda s: s.sign(MANIFEST, SUBJECT, ISSUER, ct_log=LocalLog("rogue-ctfe")),
            ("certificate transparency", "SCT")),
    Refusal("a tampered manifest", lambda s: s.sign(MANIFEST, SUBJECT, ISSUER),
            ("digest mismatch",), data=MANIFEST.replace(b"v1.2.1", b"v1.2.2")),
    Refusal("no transparency log entry", lambda s: drop_entries(s.sign(MANIFEST, SUBJECT, ISSUER)),
            ("not a valid Sigstore bundle", "expected exactly one log entry")),
    Refusal("an entry in a log not in the trusted root",
            lambda s: s.sign(MANIFEST, SUBJECT, ISSUER, log=LocalLog("rogue-rekor")),
            ("transparency log entry not verified", "checkpoint: invalid signature")),
    Refusal("a forged inclusion proof", lambda s: edit_entry(s.sign(MANIFEST, SUBJECT, ISSUER), forge_proof),
            ("transparency log entry not verified", "inclusion proof contains invalid root hash")),
    Refusal("a forged integration time (signed entry timestamp no longer matches)",
            lambda s: edit_entry(s.sign(MANIFEST, SUBJECT, ISSUER), move_integration_time),
            ("transparency log entry not verified", "SET: invalid inclusion promise")),
    Refusal("a genuine entry that records another signature", entry_of_another_signature,
            ("transparency log entry does not record this signature and certificate",)),
    Refusal("Rekor v2: a timestamp from a TSA not in the trusted root",
            lambda s: s.sign_v2(MANIFEST, SUBJECT, ISSUER, tsa=LocalTSA("rogue-tsa")),
            ("no trusted signing time",)),
    Refusal("Rekor v2: a timestamp after the certificate expired",
            lambda s: s.sign_v2(MANIFEST, SUBJECT, ISSUER, timestamped_after=timedelta(minutes=11)),
            ("signing certificate was not valid at the signing time",)),
    Refusal("Rekor v2: an entry in a log not in the trusted root",
            lambda s: s.sign_v2(MANIFEST, SUBJECT, ISSUER, tile_log=LocalTileLog("rogue-rekor-v2.invalid")),
            ("transparency log entry not verified", "checkpoint")),
    Refusal("Rekor v2: another issuer", lambda s: s.sign_v2(MANIFEST, SUBJECT, "https://accounts.google.com"),
            ("OIDC issuer mismatch",)),
    Refusal("Rekor v2: a tampered manifest", rekor_v2_with_tsa, ("digest mismatch",),
            data=MANIFEST.replace(b"v1.2.1", b"v1.2.2")),
    Refusal("a certificate without key usage (a check that raises outside sigstore's own errors)",
            lambda s: s.sign(MANIFEST, SUBJECT, ISSUER, key_usage=False), ("not verifiable", "ExtensionNotFound")),
    Refusal("bytes that are not a bundle", lambda s: b"{not json", ("not a valid Sigstore bundle",)),
    Refusal("cosign's legacy bundle (sign-blob without --new-bundle-format)", legacy_cosign_bundle,
            ("cosign's legacy bundle format", "--new-bundle-format")),
]


@pytest.mark.parametrize("case", REFUSALS, ids=[case.name for case in REFUSALS])
def test_refused_keyless_bundles_say_what_failed(case: Refusal, sigstore: LocalSigstore,
                                                  verifier: KeylessVerifier) -> None:
    bundle = case.bundle(sigstore)
    with pytest.raises(KeylessRefused) as refused:
        verifier.verify(bundle, case.data, IdentityPolicy(case.issuer, case.subject_regexp))
    message = str(refused.value)
    assert message.startswith("keyless bundle refused: ")
    for fragment in case.expected:
        assert fragment in message, message


@pytest.mark.parametrize(("issuer", "regexp", "expected"), [
    ("", ".*", "issuer must not be empty"),
    (ISSUER, "", "subject_regexp must not be empty"),
    (ISSUER, "(unclosed", "is not a valid regular expression"),
])
def test_a_bad_identity_policy_is_refused_naming_the_field(issuer: str, regexp: str, expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        IdentityPolicy(issuer, regexp)


def test_a_bad_trusted_root_file_is_refused_naming_it(tmp_path: Path, sigstore: LocalSigstore) -> None:
    missing = tmp_path / "absent.json"
    with pytest.raises(ValueError, match=f"trusted root {missing}"):
        load_trusted_root(missing)
    garbage = tmp_path / "garbage.json"
    garbage.write_text('{"mediaType": "something/else"}')
    with pytest.raises(ValueError, match=f"trusted root {garbage}"):
        KeylessVerifier.from_file(garbage)
    no_logs = tmp_path / "no-logs.json"
    no_logs.write_text(json.dumps({**sigstore.trusted_root(), "tlogs": []}))
    with pytest.raises(ValueError, match=f"trusted root {no_logs}: unusable"):
        KeylessVerifier.from_file(no_logs)


# --- the real cosign, offline ---------------------------------------------------------------------------------

def cosign_binary() -> str:
    built = subprocess.run([str(Path(sys.executable).parent / "ig-infra"), "tool", "cosign"], capture_output=True,
                           text=True, timeout=1800)
    assert built.returncode == 0, f"cosign could not be built: {built.stderr}"
    return built.stdout.strip().splitlines()[-1]


def offline(args: list[str]) -> subprocess.CompletedProcess[str]:
    """In a network namespace of its own when the machine allows one: the verification must not need the net."""
    isolate = shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "--net", "true"], capture_output=True).returncode == 0
    return subprocess.run(["unshare", "--net", *args] if isolate else args, capture_output=True, text=True,
                          timeout=300)


def test_the_real_cosign_verifies_the_minted_bundle_offline_and_refuses_what_we_refuse(
        sigstore: LocalSigstore, trusted_root: Path, tmp_path: Path) -> None:
    cosign = cosign_binary()
    manifest = tmp_path / "manifest.json"
    manifest.write_bytes(MANIFEST)
    bundle = tmp_path / "manifest.sigstore.json"
    bundle.write_bytes(sigstore.sign(MANIFEST, SUBJECT, ISSUER))

    def cosign_verify(file: Path, issuer: str = ISSUER, bundle_file: Path = bundle,
                      extra: tuple[str, ...] | list[str] = ()) -> subprocess.CompletedProcess[str]:
        # cosign's regexp matches anywhere in the subject; anchoring it gives our whole-subject semantics.
        return offline([cosign, "verify-blob", *extra, "--bundle", str(bundle_file),
                        "--trusted-root", str(trusted_root),
                        "--certificate-identity-regexp", f"^(?:{SUBJECT_REGEXP})$",
                        "--certificate-oidc-issuer", issuer, str(file)])

    ok = cosign_verify(manifest)
    assert ok.returncode == 0 and "Verified OK" in ok.stdout + ok.stderr, ok.stderr
    tampered = tmp_path / "tampered.json"
    tampered.write_bytes(MANIFEST.replace(b"v1.2.1", b"v1.2.2"))
    assert cosign_verify(tampered).returncode != 0
    assert cosign_verify(manifest, issuer="https://accounts.google.com").returncode != 0
    rogue = tmp_path / "rogue.sigstore.json"
    rogue.write_bytes(sigstore.sign(MANIFEST, SUBJECT, ISSUER, ca=LocalCA("rogue-fulcio")))
    assert cosign_verify(manifest, bundle_file=rogue).returncode != 0
    # Rekor v2 + TSA: cosign 2.x counts the TSA's time only with --use-signed-timestamps.
    v2 = tmp_path / "v2.sigstore.json"
    v2.write_bytes(sigstore.sign_v2(MANIFEST, SUBJECT, ISSUER))
    ok_v2 = cosign_verify(manifest, bundle_file=v2, extra=["--use-signed-timestamps"])
    assert ok_v2.returncode == 0 and "Verified OK" in ok_v2.stdout + ok_v2.stderr, ok_v2.stderr
    rogue_tsa = tmp_path / "rogue-tsa.sigstore.json"
    rogue_tsa.write_bytes(sigstore.sign_v2(MANIFEST, SUBJECT, ISSUER, tsa=LocalTSA("rogue-tsa")))
    assert cosign_verify(manifest, bundle_file=rogue_tsa, extra=["--use-signed-timestamps"]).returncode != 0
