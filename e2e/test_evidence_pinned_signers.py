"""Pinned signers (#21 item 1): the evidence service accepts a tenant's bundle only from a signer its own
configuration pins for that tenant (IG_TRUSTED_SIGNERS_PATH), never on the strength of a key the bundle carries,
and offers that pinned key (not the bundle's cosign.pub) with the manifest."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key
from ig.evidence.v1 import evidence_pb2
from ig_evidence.bundle.upload import register_requests
from ig_evidence.testing import RunningEvidence, cli, evidence_service, evidence_stub, pin, write_inputs
from ig_infra.process import free_port


def key_id_of(public_key: Path) -> str:
    loaded = load_pem_public_key(public_key.read_bytes())
    return hashlib.sha256(loaded.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).hexdigest()


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """alpha's release key, beta's, and a stranger's that nobody pins."""
    found = {}
    for who in ("alpha", "beta", "stranger"):
        directory = tmp_path_factory.mktemp(f"key-{who}")
        cli("keygen", "--out", str(directory))
        found[who] = directory
    return found


@pytest.fixture(scope="module")
def signers(keys: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("signers") / "signers.yaml"
    pin(keys["alpha"] / "cosign.pub", path, "alpha", name="alpha release key")
    return pin(keys["beta"] / "cosign.pub", path, "beta", name="beta release key")


@pytest.fixture(scope="module")
def database(infra: object) -> Iterator[str]:
    own_url = infra.new_database("ig_evidence_signers")  # type: ignore[attr-defined]
    yield own_url
    infra.drop_database(own_url)  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def service(infra: object, database: str, signers: Path, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[RunningEvidence]:
    env = {**infra.env(database, "evidence"), "IG_TRUSTED_SIGNERS_PATH": str(signers)}  # type: ignore[attr-defined]
    with evidence_service(env, database, tmp_path_factory.mktemp("blobs")) as running:
        yield running


def build(service: RunningEvidence, key: Path, release: str, out: Path, tenant: str = "alpha") -> Path:
    cli("build", "--release", release, "--inputs", str(write_inputs(out / "inputs")), "--out", str(out / "bundle"),
        "--key", str(key / "cosign.key"), "--ledger", service.grpc_target, "--tenant", tenant)
    return out / "bundle" / f"evidence-{release}.tar.gz"


def register(service: RunningEvidence, archive: Path, release: str, tenant: str
             ) -> evidence_pb2.RegisterBundleResponse:
    return evidence_stub(service).RegisterBundle(register_requests(archive, release, tenant))


def refusal(service: RunningEvidence, archive: Path, release: str, tenant: str) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as refused:
        register(service, archive, release, tenant)
    return refused.value


def released(service: RunningEvidence, tenant: str) -> set[str]:
    return {r.name for r in evidence_stub(service).ListReleases(
        evidence_pb2.ListReleasesRequest(tenant=tenant)).releases}


def test_a_bundle_signed_by_a_key_nobody_pins_is_refused_naming_its_key_id(service: RunningEvidence,
                                                                           keys: dict[str, Path],
                                                                           tmp_path: Path) -> None:
    """The bundle is whole and correctly signed, by the key it carries: that proves nothing about who signed it."""
    archive = build(service, keys["stranger"], "v9.0.1", tmp_path)
    refused = refusal(service, archive, "v9.0.1", "alpha")
    assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
    details = refused.details()
    assert key_id_of(keys["stranger"] / "cosign.pub") in details, details
    assert "not trusted for tenant 'alpha'" in details and "alpha release key" in details, details
    assert "v9.0.1" not in released(service, "alpha")


def test_a_key_pinned_for_another_tenant_is_refused_and_accepted_for_its_own(service: RunningEvidence,
                                                                             keys: dict[str, Path],
                                                                             tmp_path: Path) -> None:
    archive = build(service, keys["beta"], "v9.0.2", tmp_path, tenant="beta")
    refused = refusal(service, archive, "v9.0.2", "alpha")
    assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert key_id_of(keys["beta"] / "cosign.pub") in refused.details()
    assert "v9.0.2" not in released(service, "alpha")
    accepted = register(service, archive, "v9.0.2", "beta")
    assert not accepted.already_registered and "v9.0.2" in released(service, "beta")


def _with_member_replaced(archive: Path, name: str, data: bytes, out: Path) -> Path:
    with tarfile.open(archive, "r:gz") as source, tarfile.open(out, "w:gz") as target:
        for member in source:
            content = source.extractfile(member) if member.isreg() else None
            if member.name == name:
                member.size = len(data)
                content = io.BytesIO(data)
            target.addfile(member, content)
    return out


def test_the_manifest_comes_with_the_pinned_key_never_the_one_in_the_bundle(service: RunningEvidence,
                                                                           keys: dict[str, Path],
                                                                           tmp_path: Path) -> None:
    """alpha's bundle with a stranger's cosign.pub slipped in: still alpha's signature, so it registers, and what an
    auditor is handed to verify it with is alpha's pinned key and name, not the planted key."""
    original = build(service, keys["alpha"], "v9.0.3", tmp_path)
    planted = (keys["stranger"] / "cosign.pub").read_bytes()
    archive = _with_member_replaced(original, "cosign.pub", planted, tmp_path / "planted.tar.gz")
    register(service, archive, "v9.0.3", "alpha")
    files = evidence_stub(service).GetManifest(evidence_pb2.GetManifestRequest(release="v9.0.3", tenant="alpha"))
    assert files.public_key == (keys["alpha"] / "cosign.pub").read_bytes() != planted
    assert (files.signer_name, files.signer_key_id) == ("alpha release key", key_id_of(keys["alpha"] / "cosign.pub"))


def test_with_no_trusted_signers_every_registration_is_refused(infra: object, database: str, service: RunningEvidence,
                                                               keys: dict[str, Path], tmp_path: Path) -> None:
    """Fail closed: a second replica started without IG_TRUSTED_SIGNERS_PATH trusts nobody."""
    archive = build(service, keys["alpha"], "v9.0.4", tmp_path)
    env = {k: v for k, v in infra.env(database, "evidence").items()  # type: ignore[attr-defined]
           if k != "IG_TRUSTED_SIGNERS_PATH"}
    with evidence_service(env, database, tmp_path / "blobs") as unconfigured:
        refused = refusal(unconfigured, archive, "v9.0.4", "alpha")
    assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "(trusted: none)" in refused.details(), refused.details()


@pytest.mark.parametrize(("setting", "content", "message"), [
    ("IG_TRUSTED_SIGNERS_PATH", "tenants: {alpha: []}\n", "tenants.alpha: a non-empty list of signers"),
    ("IG_TRUSTED_SIGNERS_PATH", "tenants:\n  alpha:\n  - {name: k, publicKeyPath: missing.pub}\n",
     "tenants.alpha[0].publicKeyPath: cannot read missing.pub"),
    ("IG_TRUSTED_SIGNERS_PATH", "tenants:\n  alpha:\n  - {name: gh, keyless: {issuer: x, subjectRegexp: '['}}\n",
     "tenants.alpha[0].keyless.subjectRegexp"),
    ("IG_TRUSTED_PUBLIC_KEY_PATH", "", "IG_TRUSTED_PUBLIC_KEY_PATH: no longer read"),
])
def test_a_bad_trust_setting_stops_start_up_naming_it(infra: object, database: str, tmp_path: Path, setting: str,
                                                      content: str, message: str) -> None:
    signers = tmp_path / "signers.yaml"
    signers.write_text(content)
    env = {**infra.env(database, "evidence"), "IG_HTTP_PORT": str(free_port()),  # type: ignore[attr-defined]
           "IG_GRPC_PORT": str(free_port()), "IG_BLOB_STORE_PATH": str(tmp_path / "blobs"),
           "PATH": os.environ["PATH"], setting: str(signers)}
    done = subprocess.run([sys.executable, "-m", "ig_evidence.app"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode != 0
    assert setting in done.stderr and message in done.stderr, done.stderr[-2000:]
