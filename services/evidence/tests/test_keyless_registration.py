"""Keyless (Sigstore) signers at registration, against the real service: a bundle signed with a Fulcio-like
certificate is accepted for a tenant that trusts the certificate's identity, and refused, naming why, for one that
trusts another identity, or when the certificate comes from a CA outside the pinned trusted root."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from ig.evidence.v1 import evidence_pb2
from ig_evidence.bundle.upload import register_requests
from ig_evidence.testing import (
    RunningEvidence,
    cli,
    evidence_on_own_database,
    evidence_stub,
    write_inputs,
)

from .sigstore_local import LocalSigstore

pytestmark = pytest.mark.e2e

ISSUER = "https://token.actions.example"
WORKFLOW = "https://github.com/acme/mc/.github/workflows/release.yml@refs/tags/"


@pytest.fixture(scope="module")
def sigstore() -> LocalSigstore:
    return LocalSigstore()


@pytest.fixture(scope="module")
def service(infra: object, sigstore: LocalSigstore, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[RunningEvidence]:
    config = tmp_path_factory.mktemp("trust")
    sigstore.write_trusted_root(config / "trusted_root.json")
    (config / "signers.yaml").write_text(yaml.safe_dump({
        "tenants": {"alpha": [{"name": "release workflow",
                               "keyless": {"issuer": ISSUER, "subjectRegexp": WORKFLOW.replace(".", r"\.") + "v.*"}}],
                    "beta": [{"name": "beta workflow",
                              "keyless": {"issuer": ISSUER, "subjectRegexp": "https://github\\.com/beta/.*"}}]},
        "keylessTrustedRoot": "trusted_root.json"}))
    with evidence_on_own_database(infra, "ig_evidence_keyless", tmp_path_factory.mktemp("blobs"),
                                  IG_TRUSTED_SIGNERS_PATH=str(config / "signers.yaml")) as running:
        yield running


def keyless_bundle(service: RunningEvidence, sigstore: LocalSigstore, release: str, subject: str, out: Path) -> Path:
    """Built and anchored with the certificate's (ephemeral) key, then given the keyless Sigstore bundle of the
    manifest, as a release workflow signing with its OIDC identity would."""
    key = ec.generate_private_key(ec.SECP256R1())
    (out / "ephemeral.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                          serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    cli("build", "--release", release, "--inputs", str(write_inputs(out / "inputs")), "--out", str(out / "bundle"),
        "--key", str(out / "ephemeral.key"), "--ledger", service.grpc_target, "--tenant", "alpha")
    manifest = (out / "bundle" / "manifest.json").read_bytes()
    keyless = sigstore.sign(manifest, subject, ISSUER, signing_key=key)
    archive = out / "bundle" / f"evidence-{release}.tar.gz"
    signed = out / "keyless.tar.gz"
    with tarfile.open(archive, "r:gz") as source, tarfile.open(signed, "w:gz") as target:
        for member in source:
            content = source.extractfile(member) if member.isreg() else None
            if member.name == "manifest.sigstore.json":
                member.size, content = len(keyless), io.BytesIO(keyless)
            target.addfile(member, content)
    return signed


def test_a_keyless_bundle_of_a_trusted_identity_registers_under_that_identity(
        service: RunningEvidence, sigstore: LocalSigstore, tmp_path: Path) -> None:
    archive = keyless_bundle(service, sigstore, "v4.0.0", WORKFLOW + "v4.0.0", tmp_path)
    stub = evidence_stub(service)
    assert not stub.RegisterBundle(register_requests(archive, "v4.0.0", "alpha")).already_registered
    files = stub.GetManifest(evidence_pb2.GetManifestRequest(release="v4.0.0", tenant="alpha"))
    assert files.signer_name == f"release workflow ({WORKFLOW}v4.0.0)"
    assert files.signer_key_id == "" and files.public_key == b""


@pytest.mark.parametrize(("tenant", "subject", "other_ca", "message"), [
    ("beta", WORKFLOW + "v4.0.1", False, "beta workflow: keyless bundle refused: subject mismatch"),
    ("alpha", "https://github.com/acme/mc/.github/workflows/release.yml@refs/heads/main", False, "subject mismatch"),
    ("alpha", WORKFLOW + "v4.0.1", True, "untrusted certificate authority"),
])
def test_a_keyless_bundle_of_another_identity_is_refused_saying_why(
        service: RunningEvidence, sigstore: LocalSigstore, tmp_path: Path, tenant: str, subject: str, other_ca: bool,
        message: str) -> None:
    signing = LocalSigstore() if other_ca else sigstore
    archive = keyless_bundle(service, signing, "v4.0.1", subject, tmp_path)
    with pytest.raises(grpc.RpcError) as refused:
        evidence_stub(service).RegisterBundle(register_requests(archive, "v4.0.1", tenant))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION, refused.value.details()
    assert message in refused.value.details(), refused.value.details()


@pytest.fixture(scope="module")
def keyless_kit(service: RunningEvidence, sigstore: LocalSigstore, tmp_path_factory: pytest.TempPathFactory
                ) -> tuple[Path, Path]:
    """A keyless release registered, then its verify kit fetched; with the trusted root the service pins."""
    out = tmp_path_factory.mktemp("keyless-kit")
    archive = keyless_bundle(service, sigstore, "v4.2.0", WORKFLOW + "v4.2.0", out)
    evidence_stub(service).RegisterBundle(register_requests(archive, "v4.2.0", "alpha"))
    parts = list(evidence_stub(service).GetVerifyKit(evidence_pb2.GetVerifyKitRequest(release="v4.2.0",
                                                                                       tenant="alpha")))
    assert parts[0].info.signer_name == f"release workflow ({WORKFLOW}v4.2.0)" and not parts[0].info.signer_key_id
    kit = out / "evidence-kit-v4.2.0.tar"
    kit.write_bytes(b"".join(p.chunk for p in parts[1:]))
    root = out / "auditor_trusted_root.json"
    sigstore.write_trusted_root(root)
    return kit, root


ALPHA_REGEXP = WORKFLOW.replace(".", r"\.") + "v.*"


def test_a_keyless_kit_verifies_offline_against_the_identity_the_auditor_pins(keyless_kit: tuple[Path, Path]
                                                                               ) -> None:
    kit, root = keyless_kit
    done = cli("verify", str(kit), "--certificate-oidc-issuer", ISSUER, "--certificate-identity-regexp",
               ALPHA_REGEXP, "--trusted-root", str(root))
    assert f"keyless: {WORKFLOW}v4.2.0 from {ISSUER}" in done.stdout, done.stdout
    assert "release v4.2.0 of tenant alpha" in done.stdout and "note:" not in done.stderr
    unpinned = cli("verify", str(kit))  # the kit's own identity policy and trusted root: verified, and said so
    assert "keyless" in unpinned.stdout and "the signer was taken from the kit" in unpinned.stderr


@pytest.mark.parametrize(("pins", "message"), [
    (["--certificate-oidc-issuer", ISSUER, "--certificate-identity-regexp", r"https://github\.com/beta/.*"],
     "subject mismatch"),
    (["--certificate-oidc-issuer", "https://accounts.example", "--certificate-identity-regexp", ALPHA_REGEXP],
     "OIDC issuer mismatch"),
    (["--trusted-root", "OTHER"], "untrusted certificate authority"),
    (["--key-id", "ab" * 32], "signs keylessly (no key id)"),
])
def test_a_keyless_kit_is_refused_when_the_auditor_pins_another_signer(
        keyless_kit: tuple[Path, Path], tmp_path: Path, pins: list[str], message: str) -> None:
    kit, _ = keyless_kit
    if "OTHER" in pins:
        LocalSigstore().write_trusted_root(tmp_path / "other_root.json")
        pins = [str(tmp_path / "other_root.json") if p == "OTHER" else p for p in pins]
    refused = cli("verify", str(kit), *pins, check=False)
    assert refused.returncode == 1 and message in refused.stderr, refused.stdout + refused.stderr


def test_a_keyless_bundle_verifies_with_an_identity_and_trusted_root_not_without(
        service: RunningEvidence, sigstore: LocalSigstore, tmp_path: Path) -> None:
    archive = keyless_bundle(service, sigstore, "v4.3.0", WORKFLOW + "v4.3.0", tmp_path)
    sigstore.write_trusted_root(tmp_path / "root.json")
    done = cli("verify", str(archive), "--certificate-oidc-issuer", ISSUER, "--certificate-identity-regexp",
               ALPHA_REGEXP, "--trusted-root", str(tmp_path / "root.json"))
    assert f"signed keylessly by {WORKFLOW}v4.3.0" in done.stdout, done.stdout
    unpinned = cli("verify", str(archive), check=False)
    assert unpinned.returncode == 2 and "--certificate-identity-regexp" in unpinned.stderr
