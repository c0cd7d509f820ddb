"""The verify kit (#21 item 6): GetVerifyKit assembles, per release, the registered bundle, the pinned key, the
ledger's head checkpoint and the proofs; `ig-evidence verify <kit>` checks it offline in one command, and refuses a
kit with any part swapped or edited."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from ig.evidence.v1 import evidence_pb2
from ig_evidence.bundle.upload import register_requests
from ig_evidence.domain import note
from ig_evidence.testing import (
    RunningEvidence,
    cli,
    evidence_on_own_database,
    evidence_stub,
    pin,
    write_inputs,
)

RELEASE = "v3.1.4"
IMAGE = ("localhost/ig/evidence:v3.1.4", "e" * 64)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    found = {}
    for who in ("release", "stranger"):
        directory = tmp_path_factory.mktemp(f"key-{who}")
        cli("keygen", "--out", str(directory))
        found[who] = directory
    return found


@pytest.fixture(scope="module")
def service(infra: object, keys: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[RunningEvidence]:
    signers = pin(keys["release"] / "cosign.pub", tmp_path_factory.mktemp("signers") / "signers.yaml", "alpha",
                  name="kit release key")
    with evidence_on_own_database(infra, "ig_evidence_kit", tmp_path_factory.mktemp("blobs"),
                                  IG_TRUSTED_SIGNERS_PATH=str(signers)) as running:
        yield running


def fetch_kit(service: RunningEvidence, release: str, out: Path) -> tuple[evidence_pb2.VerifyKitInfo, Path]:
    parts = list(evidence_stub(service).GetVerifyKit(evidence_pb2.GetVerifyKitRequest(release=release,
                                                                                       tenant="alpha")))
    out.write_bytes(b"".join(p.chunk for p in parts[1:]))
    return parts[0].info, out


@pytest.fixture(scope="module")
def kit(service: RunningEvidence, keys: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
        ) -> tuple[evidence_pb2.VerifyKitInfo, Path]:
    root = tmp_path_factory.mktemp("kit")
    images = root / "images.json"
    images.write_text(json.dumps([{"name": IMAGE[0], "digest": {"sha256": IMAGE[1]}}]))
    cli("build", "--release", RELEASE, "--inputs", str(write_inputs(root / "inputs")), "--out", str(root / "bundle"),
        "--key", str(keys["release"] / "cosign.key"), "--ledger", service.grpc_target, "--tenant", "alpha",
        "--subjects", str(images))
    evidence_stub(service).RegisterBundle(register_requests(root / "bundle" / f"evidence-{RELEASE}.tar.gz", RELEASE,
                                                            "alpha"))
    # Appends after the registration: the kit proves the bundle against a head that moved on.
    cli("build", "--release", "v3.1.5", "--inputs", str(write_inputs(root / "later")), "--out", str(root / "later-b"),
        "--key", str(keys["release"] / "cosign.key"), "--ledger", service.grpc_target, "--tenant", "alpha")
    return fetch_kit(service, RELEASE, root / f"evidence-kit-{RELEASE}.tar")


def test_a_kit_verifies_offline_in_one_command(kit: tuple[evidence_pb2.VerifyKitInfo, Path]) -> None:
    info, path = kit
    assert info.file_name == f"evidence-kit-{RELEASE}.tar" and info.signer_name == "kit release key"
    done = cli("verify", str(path), "--key-id", info.signer_key_id)
    assert f"release {RELEASE} of tenant alpha" in done.stdout and info.signer_key_id in done.stdout
    assert f"checkpoint of size {info.head_tree_size}" in done.stdout
    assert f"its provenance also attests {IMAGE[0]}@sha256:{IMAGE[1]}" in done.stdout


def test_a_kit_checks_an_image_against_the_releases_provenance(kit: tuple[evidence_pb2.VerifyKitInfo, Path]) -> None:
    info, path = kit
    attested = cli("verify", str(path), "--key-id", info.signer_key_id, f"--subject={IMAGE[0]}@sha256:{IMAGE[1]}")
    assert attested.returncode == 0
    other = cli("verify", str(path), "--key-id", info.signer_key_id, f"--subject={IMAGE[0]}@sha256:{'f' * 64}",
                check=False)
    assert other.returncode == 1 and f"it attests sha256:{IMAGE[1]}" in other.stderr, other.stderr


def _rewrite(kit: Path, out: Path, change: Callable[[str, bytes], bytes]) -> Path:
    with tarfile.open(kit, "r:") as source, tarfile.open(out, "w:") as target:
        for member in source:
            handle = source.extractfile(member)
            data = change(member.name, handle.read() if handle is not None else b"")
            member.size = len(data)
            target.addfile(member, io.BytesIO(data))
    return out


def _index(edit: Callable[[dict[str, Any]], None]) -> Callable[[str, bytes], bytes]:
    def change(name: str, data: bytes) -> bytes:
        if name != "kit.json":
            return data
        document = json.loads(data)
        edit(document)
        return json.dumps(document).encode()
    return change


def _flip_first(hashes: list[str]) -> None:
    hashes[0] = ("0" if hashes[0][0] != "0" else "1") + hashes[0][1:]


def _resigned_checkpoint(name: str, data: bytes) -> bytes:
    if name != "checkpoint":
        return data
    body = data.decode().partition("\n\n")[0] + "\n"
    checkpoint = note.parse_checkpoint_body(body)
    return note.sign_checkpoint(checkpoint, checkpoint.origin, Ed25519PrivateKey.generate()).encode()


def _other_bundle(stranger: Path) -> Callable[[str, bytes], bytes]:
    def change(name: str, data: bytes) -> bytes:
        return stranger.read_bytes() if name.endswith(".tar.gz") else data
    return change


TAMPERING: dict[str, tuple[Callable[[dict[str, Path]], Callable[[str, bytes], bytes]], str]] = {
    "registration claimed for another tenant": (
        lambda keys: _index(lambda d: d.update(tenant="beta")), "the ledger says tenant 'alpha', the kit 'beta'"),
    "registration entry edited": (
        lambda keys: _index(lambda d: d["ledger"]["registration"].update(subject="v0.0.1")), "hash does not match"),
    "inclusion proof edited": (
        lambda keys: _index(lambda d: _flip_first(d["ledger"]["registration"]["inclusion"])),
        "is not in the head checkpoint"),
    "consistency proof edited": (
        lambda keys: _index(lambda d: _flip_first(d["ledger"]["consistency"])), "is not consistent with the head"),
    "checkpoint re-signed with another key": (lambda keys: _resigned_checkpoint, "checkpoint: checkpoint carries no "
                                                                                 "signature"),
    "signer key swapped": (
        lambda keys: lambda name, data: (keys["stranger"] / "cosign.pub").read_bytes() if name == "signer.pub"
        else data, "signer.pub: its key id is"),
}


@pytest.mark.parametrize("case", sorted(TAMPERING))
def test_a_tampered_kit_is_refused_naming_what(case: str, kit: tuple[evidence_pb2.VerifyKitInfo, Path],
                                               keys: dict[str, Path], tmp_path: Path) -> None:
    make_change, message = TAMPERING[case]
    tampered = _rewrite(kit[1], tmp_path / "tampered.tar", make_change(keys))
    done = cli("verify", str(tampered), check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert message in done.stderr, done.stderr


def test_a_kit_with_another_valid_bundle_inside_is_refused(service: RunningEvidence, kit: tuple[Any, Path],
                                                           keys: dict[str, Path], tmp_path: Path) -> None:
    """A genuine bundle of the same signer, but not the one registered: the registered archive's hash gives it away."""
    cli("build", "--release", RELEASE, "--inputs", str(write_inputs(tmp_path / "inputs", ["load-report"])), "--out",
        str(tmp_path / "other"), "--key", str(keys["release"] / "cosign.key"), "--allow-incomplete")
    tampered = _rewrite(kit[1], tmp_path / "tampered.tar",
                        _other_bundle(tmp_path / "other" / f"evidence-{RELEASE}.tar.gz"))
    done = cli("verify", str(tampered), check=False)
    assert done.returncode == 1 and "its SHA-256 is not the registered archive's" in done.stderr, done.stderr


def test_a_kit_needs_its_release_registered_and_is_tenant_scoped(service: RunningEvidence,
                                                                 kit: tuple[Any, Path]) -> None:
    stub = evidence_stub(service)
    for tenant, release in (("beta", RELEASE), ("alpha", "v9.9.9")):
        with pytest.raises(grpc.RpcError) as refused:
            list(stub.GetVerifyKit(evidence_pb2.GetVerifyKitRequest(release=release, tenant=tenant)))
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND, refused.value.details()
