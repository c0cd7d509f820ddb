"""The evidence service as a real process on a private database: LedgerService and EvidenceService over gRPC,
events on Kafka, tamper detection through Verify, and `make evidence` verified by the real cosign binary."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key
from ig.events.v1 import events_pb2
from ig.evidence.v1 import evidence_pb2, evidence_pb2_grpc
from ig.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from ig_common.authz import USER_TOKEN_METADATA, ForwardedUser, sign_user_token
from ig_common.events.envelope import ReceivedEvent, from_kafka_record
from ig_common.grpc_client import channel_as
from ig_common.spiffe import SpiffeId
from ig_evidence.bundle.upload import register_requests
from ig_evidence.domain import merkle, note
from ig_evidence.testing import (
    EPOCH,
    RunningEvidence,
    cli,
    evidence_on_own_database,
    evidence_stub,
    pin,
    write_inputs,
)
from ig_infra.kafka_reading import consumer_at
from ig_infra.process import free_port

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]



async def read_events(bootstrap: str, topic: str, want: int, match: object, since: float, within: float = 30.0
                      ) -> list[ReceivedEvent]:
    """Events on ``topic`` produced from ``since`` on for which ``match(event)`` holds, until ``want`` were seen."""
    found: list[ReceivedEvent] = []
    async with consumer_at(bootstrap, topic, since=since) as consumer:
        deadline = asyncio.get_running_loop().time() + within
        while asyncio.get_running_loop().time() < deadline and len(found) < want:
            for records in (await consumer.getmany(timeout_ms=300)).values():
                for record in records:
                    event = from_kafka_record(record.topic, record.key, record.value, list(record.headers))
                    if match(event):  # type: ignore[operator]
                        found.append(event)
    return found


TRUSTED_ROOT = REPO / "policies/evidence/cosign-offline-trusted-root.json"
CONTRACT = REPO / "policies/evidence/release-contract.v1.yaml"


def offline(args: list[str], cwd: Path | None = None, isolate: bool = True) -> subprocess.CompletedProcess[str]:
    """Run cosign in a network namespace of its own when possible: verification must not need the internet."""
    can_isolate = isolate and shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "--net", "true"], capture_output=True).returncode == 0
    return subprocess.run(["unshare", "--net", *args] if can_isolate else args, capture_output=True, text=True,
                          cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("keys")
    cli("keygen", "--out", str(directory))
    return directory


@pytest.fixture(scope="module")
def signers(keys: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This module's release key, pinned for alpha and beta (the tenants the release identity may act for)."""
    return pin(keys / "cosign.pub", tmp_path_factory.mktemp("signers") / "signers.yaml", "alpha", "beta")


@pytest.fixture(scope="module")
def service(infra: object, database_url: str, signers: Path, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[RunningEvidence]:
    # A database of its own, so tampering with the ledger cannot disturb other tests; the service runs there as its
    # runtime role (migrations as its migrator role), never as the superuser.
    with evidence_on_own_database(infra, "ig_evidence", tmp_path_factory.mktemp("blobs"),
                                  IG_TRUSTED_SIGNERS_PATH=str(signers)) as running:
        yield running


@pytest.fixture(scope="module")
def bundle(service: RunningEvidence, keys: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bundle")
    inputs = write_inputs(root / "inputs")
    cli("build", "--release", "v1.2.1", "--inputs", str(inputs), "--out", str(root / "out"), "--key",
        str(keys / "cosign.key"), "--ledger", service.grpc_target, "--tenant", "alpha")
    return root / "out"


def ledger_stub(service: RunningEvidence) -> ledger_pb2_grpc.LedgerServiceStub:
    return ledger_pb2_grpc.LedgerServiceStub(channel_as("release", service.grpc_target))


def test_ledger_appends_reads_proves_and_publishes(service: RunningEvidence, kafka_bootstrap: str) -> None:
    stub = ledger_stub(service)
    since = time.time()
    run = uuid.uuid4().hex[:8]  # the topic is shared with earlier runs: match this run's entries only
    appended = [stub.Append(ledger_pb2.AppendRequest(kind="release.e2e-test", subject=f"{run}-item-{i}",
                                                     payload=b"p%d" % i, tenant="alpha")) for i in range(6)]
    seqs = [a.entry.seq for a in appended]
    assert seqs == list(range(seqs[0], seqs[0] + 6))
    assert stub.Get(ledger_pb2.GetRequest(seq=seqs[2], tenant="alpha")).entry.entry_hash == appended[2].entry.entry_hash
    listed = stub.List(ledger_pb2.ListRequest(kind="release.e2e-test", subject=f"{run}-item-4",
                                               tenant="alpha")).entries
    assert [e.seq for e in listed] == [seqs[4]]
    checkpoint = stub.Checkpoint(ledger_pb2.CheckpointRequest())
    opened = note.open_checkpoint(checkpoint.note, checkpoint.verifier_key)
    assert opened.tree_size == checkpoint.tree_size >= seqs[-1]
    proof = stub.InclusionProof(ledger_pb2.InclusionProofRequest(seq=seqs[1], tree_size=checkpoint.tree_size))
    merkle.verify_inclusion(proof.leaf_index, proof.tree_size, bytes.fromhex(proof.leaf_hash),
                            [bytes.fromhex(h) for h in proof.hashes], opened.root_hash)
    assert proof.leaf_hash == merkle.leaf_hash(bytes.fromhex(appended[1].entry.entry_hash)).hex()
    older = stub.Checkpoint(ledger_pb2.CheckpointRequest(tree_size=seqs[0]))
    consistency = stub.ConsistencyProof(ledger_pb2.ConsistencyProofRequest(first_size=seqs[0],
                                                                           second_size=checkpoint.tree_size))
    merkle.verify_consistency(seqs[0], checkpoint.tree_size, bytes.fromhex(older.root_hash), opened.root_hash,
                              [bytes.fromhex(h) for h in consistency.hashes])
    assert stub.Verify(ledger_pb2.VerifyRequest()).ok
    events = asyncio.run(read_events(kafka_bootstrap, "ig.ledger.entries.v1", 6, lambda e: e.parse(
        events_pb2.LedgerEntryAppended()).subject.startswith(run), since))
    published = sorted((e.parse(events_pb2.LedgerEntryAppended()).seq, e.subject, e.type) for e in events)
    assert published == [(seq, str(seq), "ig.ledger.entry_appended.v1") for seq in seqs]


@pytest.mark.parametrize(("call", "request_message", "field"), [
    ("Append", ledger_pb2.AppendRequest(kind="", subject="s", tenant="alpha"), "kind"),
    ("Append", ledger_pb2.AppendRequest(kind="release.k", subject="s", payload=b"x" * (1 << 20 | 1), tenant="alpha"),
     "payload"),
    ("Append", ledger_pb2.AppendRequest(kind="release.k", subject="s"), "tenant"),
    ("Append", ledger_pb2.AppendRequest(kind="release.k", subject="s", tenant="Alpha!"), "tenant"),
    ("Get", ledger_pb2.GetRequest(seq=0, tenant="alpha"), "seq"),
    ("Get", ledger_pb2.GetRequest(seq=1), "tenant"),
    ("List", ledger_pb2.ListRequest(page_size=5000, tenant="alpha"), "page_size"),
    ("List", ledger_pb2.ListRequest(kind="release.k"), "tenant"),
    ("InclusionProof", ledger_pb2.InclusionProofRequest(seq=10 ** 9), "seq"),
    ("ConsistencyProof", ledger_pb2.ConsistencyProofRequest(first_size=0), "first_size"),
    ("Checkpoint", ledger_pb2.CheckpointRequest(tree_size=10 ** 9), "tree_size"),
])
def test_bad_ledger_requests_are_invalid_argument_naming_the_field(service: RunningEvidence, call: str,
                                                                   request_message: object, field: str) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        getattr(ledger_stub(service), call)(request_message)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details().startswith(field)


def test_register_list_download_and_idempotent_reregistration(service: RunningEvidence, bundle: Path,
                                                              kafka_bootstrap: str) -> None:
    stub = evidence_stub(service)
    archive = bundle / "evidence-v1.2.1.tar.gz"
    since = time.time()
    first = stub.RegisterBundle(register_requests(archive, "v1.2.1", "alpha"))
    again = stub.RegisterBundle(register_requests(archive, "v1.2.1", "alpha"))
    assert not first.already_registered and again.already_registered
    assert again.ledger_seq == first.ledger_seq and again.manifest_sha256 == first.manifest_sha256
    assert first.manifest_sha256 == hashlib.sha256((bundle / "manifest.json").read_bytes()).hexdigest()
    releases = stub.ListReleases(evidence_pb2.ListReleasesRequest(tenant="alpha")).releases
    assert [(r.name, r.complete) for r in releases] == [("v1.2.1", True)]
    artifacts = stub.ListArtifacts(evidence_pb2.ListArtifactsRequest(release="v1.2.1", tenant="alpha")).artifacts
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert sorted((a.name, a.sha256) for a in artifacts) == sorted((a["name"], a["sha256"])
                                                                   for a in manifest["artifacts"])
    sbom = next(a for a in artifacts if a.type == "sbom")
    parts = list(stub.GetArtifact(evidence_pb2.GetArtifactRequest(artifact_id=sbom.id, tenant="alpha")))
    assert parts[0].artifact.name == "sbom.spdx.json"
    assert hashlib.sha256(b"".join(p.chunk for p in parts[1:])).hexdigest() == sbom.sha256
    with pytest.raises(grpc.RpcError) as other_tenant:
        list(stub.GetArtifact(evidence_pb2.GetArtifactRequest(artifact_id=sbom.id, tenant="beta")))
    assert other_tenant.value.code() == grpc.StatusCode.NOT_FOUND
    files = stub.GetManifest(evidence_pb2.GetManifestRequest(release="v1.2.1", tenant="alpha"))
    assert files.manifest == (bundle / "manifest.json").read_bytes()
    assert files.signature == (bundle / "manifest.json.sig").read_bytes()
    assert files.sigstore_bundle == (bundle / "manifest.sigstore.json").read_bytes()
    assert files.public_key == (bundle / "cosign.pub").read_bytes()  # the pinned key, which signed it
    assert files.signer_name == "e2e release key"
    assert files.signer_key_id == hashlib.sha256(load_pem_public_key(files.public_key).public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).hexdigest()
    assert files.manifest_sha256 == first.manifest_sha256
    with pytest.raises(grpc.RpcError) as hidden:
        stub.GetManifest(evidence_pb2.GetManifestRequest(release="v1.2.1", tenant="beta"))
    assert hidden.value.code() == grpc.StatusCode.NOT_FOUND
    completeness = stub.Completeness(evidence_pb2.CompletenessRequest(release="v1.2.1", tenant="alpha"))
    assert completeness.complete and completeness.contract_version == "1.0.0" and not completeness.missing
    with urllib.request.urlopen(f"http://127.0.0.1:{service.http_port}/metrics", timeout=5) as response:
        metrics = response.read().decode()
    # Named by its manifest, never by tenant or release: /metrics answers anyone who reaches the port.
    assert f'ig_evidence_release_missing_artifacts{{manifest="{first.manifest_sha256[:16]}"}} 0.0' in metrics
    assert 'tenant="' not in metrics and 'release="' not in metrics
    entry = ledger_stub(service).Get(ledger_pb2.GetRequest(seq=first.ledger_seq, tenant="alpha")).entry
    assert entry.kind == "evidence.bundle_registered" and first.manifest_sha256.encode() in entry.payload
    events = asyncio.run(read_events(kafka_bootstrap, "ig.evidence.bundles.v1", 1, lambda e: e.parse(
        events_pb2.BundleRegistered()).manifest_sha256 == first.manifest_sha256, since))
    assert events and events[0].parse(events_pb2.BundleRegistered()).ledger_seq == first.ledger_seq


def test_an_artifact_whose_bytes_are_gone_is_data_loss_naming_it(service: RunningEvidence, bundle: Path) -> None:
    """A registered artifact whose blob left the store (a volume not shared between replicas, a lost disk) is answered
    DATA_LOSS naming the artifact before any part is sent, instead of UNKNOWN half-way through the stream."""
    stub = evidence_stub(service)
    stub.RegisterBundle(register_requests(bundle / "evidence-v1.2.1.tar.gz", "v1.2.1", "alpha"))
    artifacts = stub.ListArtifacts(evidence_pb2.ListArtifactsRequest(release="v1.2.1", tenant="alpha")).artifacts
    sbom = next(a for a in artifacts if a.type == "sbom")
    blob = service.blob_dir / "sha256" / sbom.sha256[:2] / sbom.sha256
    aside = blob.with_name(blob.name + ".aside")
    blob.rename(aside)
    try:
        with pytest.raises(grpc.RpcError) as lost:
            list(stub.GetArtifact(evidence_pb2.GetArtifactRequest(artifact_id=sbom.id, tenant="alpha")))
    finally:
        aside.rename(blob)
    assert lost.value.code() == grpc.StatusCode.DATA_LOSS
    assert lost.value.details().startswith(f"artifact_id: the bytes of {sbom.id!r}")
    parts = list(stub.GetArtifact(evidence_pb2.GetArtifactRequest(artifact_id=sbom.id, tenant="alpha")))
    assert hashlib.sha256(b"".join(p.chunk for p in parts[1:])).hexdigest() == sbom.sha256


def _tampered(archive: Path, tmp: Path) -> Path:
    data = bytearray(archive.read_bytes())
    data[len(data) // 3] ^= 0x40
    (tmp / "bad.tar.gz").write_bytes(bytes(data))
    return tmp / "bad.tar.gz"


def test_bad_uploads_are_invalid_argument(service: RunningEvidence, bundle: Path, tmp_path: Path) -> None:
    stub = evidence_stub(service)
    archive = bundle / "evidence-v1.2.1.tar.gz"
    cases = [
        (iter([evidence_pb2.RegisterBundleRequest(chunk=b"x")]), "header"),
        (register_requests(archive, "../etc", "alpha"), "header.release"),
        (register_requests(archive, "v9.9.9", "alpha"), "header.release"),
        (register_requests(_tampered(archive, tmp_path), "v1.2.1", "alpha"), "chunk: bundle rejected"),
    ]
    for requests, field in cases:
        with pytest.raises(grpc.RpcError) as raised:
            stub.RegisterBundle(requests)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
        assert raised.value.details().startswith(field), raised.value.details()
    with pytest.raises(grpc.RpcError) as unknown:
        stub.Completeness(evidence_pb2.CompletenessRequest(release="v0.0.0", tenant="alpha"))
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


def _resident_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


class _Zeros(io.RawIOBase):
    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        buffer[:] = bytes(len(buffer))
        return len(buffer)


def test_a_gzip_bomb_is_refused_while_it_arrives_and_the_service_stays_small(service: RunningEvidence,
                                                                            tmp_path: Path) -> None:
    bomb = tmp_path / "evidence-v1.2.1.tar.gz"
    with gzip.open(bomb, "wb", compresslevel=9) as out, tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo("artifacts/load-report/zeros.json")
        info.size = 512 << 20
        tar.addfile(info, io.BufferedReader(_Zeros(), 1 << 20))
    assert bomb.stat().st_size < 1 << 20  # 512 MiB inflated from well under 1 MiB
    stored_before = sorted(p for p in service.blob_dir.rglob("*") if p.is_file())
    rss_before = _resident_bytes(service.pid)
    with pytest.raises(grpc.RpcError) as refused:
        evidence_stub(service).RegisterBundle(register_requests(bomb, "v1.2.1", "alpha"), timeout=60)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, refused.value.details()
    assert refused.value.details().startswith("chunk: bundle refused: IG_MAX_COMPRESSION_RATIO")
    assert _resident_bytes(service.pid) - rss_before < 32 << 20
    # Nothing kept: the partial upload's temporary file goes once the handler unwinds (just after the reply).
    deadline = time.monotonic() + 10
    while sorted(p for p in service.blob_dir.rglob("*") if p.is_file()) != stored_before:
        assert time.monotonic() < deadline, "the refused upload left files in the blob store"
        time.sleep(0.1)
    with urllib.request.urlopen(f"http://127.0.0.1:{service.http_port}/metrics", timeout=5) as response:
        assert 'ig_evidence_uploads_refused_total{cap="IG_MAX_COMPRESSION_RATIO"} 1.0' in response.read().decode()


def test_make_evidence_builds_a_bundle_the_real_cosign_verifies(service: RunningEvidence, keys: Path,
                                                                 tmp_path: Path) -> None:
    inputs = write_inputs(tmp_path / "inputs")
    out = tmp_path / "v1.2.1"
    make = subprocess.run(
        ["make", "--no-print-directory", "evidence", "VERSION=v1.2.1", f"EVIDENCE_INPUTS={inputs}",
         f"EVIDENCE_OUT={out}", f"EVIDENCE_KEY={keys / 'cosign.key'}", f"EVIDENCE_LEDGER={service.grpc_target}",
         f"EVIDENCE_SERVER={service.grpc_target}"],
        cwd=REPO, capture_output=True, text=True, timeout=1800, env={**os.environ, "SOURCE_DATE_EPOCH": EPOCH})
    assert make.returncode == 0, make.stdout + make.stderr
    assert "Verified OK" in make.stdout + make.stderr
    cosign = offline([str(Path(sys.executable).parent / "ig-infra"), "tool", "cosign"], cwd=REPO, isolate=False)
    assert cosign.returncode == 0, cosign.stderr
    binary = cosign.stdout.strip().splitlines()[-1]
    verify = [binary, "verify-blob", "--key", str(keys / "cosign.pub"), "--bundle", str(out / "manifest.sigstore.json"),
              "--insecure-ignore-tlog=true", "--trusted-root", str(TRUSTED_ROOT)]
    ok = offline([*verify, str(out / "manifest.json")])
    assert ok.returncode == 0 and "Verified OK" in ok.stderr + ok.stdout, ok.stderr
    # The detached signature file is what older tooling reads; cosign accepts it as well.
    ok_sig = offline([binary, "verify-blob", "--key", str(keys / "cosign.pub"), "--signature",
                      str(out / "manifest.json.sig"), "--insecure-ignore-tlog=true", str(out / "manifest.json")])
    assert ok_sig.returncode == 0 and "Verified OK" in ok_sig.stderr + ok_sig.stdout, ok_sig.stderr
    changed = tmp_path / "manifest.json"
    changed.write_bytes((out / "manifest.json").read_bytes().replace(b'"complete":true', b'"complete":false'))
    refused = offline([*verify, str(changed)])
    assert refused.returncode != 0 and "invalid signature" in refused.stderr
    releases = evidence_stub(service).ListReleases(evidence_pb2.ListReleasesRequest(tenant="alpha")).releases
    assert "v1.2.1" in {r.name for r in releases}
    # Pinning the ledger's checkpoint key: the service's own key passes, any other key is refused.
    ledger_key = ledger_stub(service).Checkpoint(ledger_pb2.CheckpointRequest()).verifier_key
    pinned = cli("verify", str(out), "--key", str(keys / "cosign.pub"), "--ledger-key", ledger_key)
    assert "included in its checkpoint" in pinned.stdout
    stranger = note.verifier_key("someone.else/log", Ed25519PrivateKey.generate().public_key())
    refused_pin = cli("verify", str(out), "--key", str(keys / "cosign.pub"), "--ledger-key", stranger, check=False)
    assert refused_pin.returncode == 1 and "pinned" in refused_pin.stderr


def test_amend_anchors_a_new_entry_that_links_the_superseded_manifest(service: RunningEvidence, bundle: Path,
                                                                      keys: Path, tmp_path: Path) -> None:
    delta = tmp_path / "delta" / "portal-access-log"
    delta.mkdir(parents=True)
    (delta / "portal-access.csv").write_text("user,action,object\nauditor@acme,download,sbom.spdx.json\n")
    cli("amend", "--release", "v1.2.1", "--bundle", str(bundle), "--inputs", str(tmp_path / "delta"), "--out",
        str(tmp_path / "amended"), "--key", str(keys / "cosign.key"), "--ledger", service.grpc_target,
        "--tenant", "alpha")
    old = json.loads((bundle / "manifest.json").read_text())
    new = json.loads((tmp_path / "amended" / "manifest.json").read_text())
    assert new["supersedes"]["provenance"] == old["provenance"]
    assert new["supersedes"]["manifestSha256"] == hashlib.sha256((bundle / "manifest.json").read_bytes()).hexdigest()
    assert new["ledger"]["entry"]["kind"] == "evidence.amend"
    assert new["ledger"]["entry"]["seq"] > old["ledger"]["entry"]["seq"]
    assert "portal-access.csv" in {a["name"] for a in new["artifacts"]}
    entry = ledger_stub(service).Get(ledger_pb2.GetRequest(seq=new["ledger"]["entry"]["seq"],
                                                        tenant="alpha")).entry
    assert json.loads(entry.payload)["supersedes"]["provenance"] == old["provenance"]
    verified = cli("verify", str(tmp_path / "amended"), "--key", str(keys / "cosign.pub"), "--contract", str(CONTRACT))
    assert "included in its checkpoint" in verified.stdout


# Last on purpose: it corrupts this module's private ledger.
def test_a_superuser_edit_makes_verify_name_the_first_bad_seq(service: RunningEvidence) -> None:
    stub = ledger_stub(service)
    seqs = [stub.Append(ledger_pb2.AppendRequest(kind="release.e2e-tamper", subject=f"t{i}", payload=b"v",
                                                 tenant="alpha")).entry.seq
            for i in range(5)]
    assert stub.Verify(ledger_pb2.VerifyRequest()).ok

    async def edit() -> None:
        conn = await asyncpg.connect(service.database_url)
        try:
            await conn.execute("SET session_replication_role = replica")
            await conn.execute("UPDATE evidence.ledger_entries SET subject = 'forged' WHERE seq = $1", seqs[2])
        finally:
            await conn.close()

    asyncio.run(edit())
    report = stub.Verify(ledger_pb2.VerifyRequest())
    assert not report.ok and report.first_bad_seq == seqs[2], report.message


# The attacks of the zero-trust issue, replayed against the real service.

def test_the_empty_tenant_wildcard_is_gone(service: RunningEvidence, bundle: Path) -> None:
    """An empty tenant used to list every tenant's releases; a tenant the caller is not granted is refused too."""
    stub = evidence_stub(service)
    stub.RegisterBundle(register_requests(bundle / "evidence-v1.2.1.tar.gz", "v1.2.1", "alpha"))
    for tenant in ("", "globex"):
        with pytest.raises(grpc.RpcError) as refused:
            stub.ListReleases(evidence_pb2.ListReleasesRequest(tenant=tenant))
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert refused.value.details() == (f"tenant: spiffe://maestro.local/ns/ig/sa/release may not act for tenant "
                                           f"{tenant!r}")
    assert {r.tenant for r in stub.ListReleases(evidence_pb2.ListReleasesRequest(tenant="alpha")).releases} == {"alpha"}


def test_a_forged_audit_entry_is_refused_and_nothing_is_appended(service: RunningEvidence) -> None:
    """Anyone could append ig.audit.access entries (a non-JSON one broke the portal's access log for good)."""
    ledger = ledger_stub(service)
    before = ledger.Checkpoint(ledger_pb2.CheckpointRequest()).tree_size
    with pytest.raises(grpc.RpcError) as refused:
        ledger.Append(ledger_pb2.AppendRequest(kind="ig.audit.access", subject="portal/alpha/v1.2.1",
                                               payload=b"not json", tenant="alpha"))
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert refused.value.details() == ("kind: spiffe://maestro.local/ns/ig/sa/release may not append "
                                       "'ig.audit.access' entries")
    assert ledger.Checkpoint(ledger_pb2.CheckpointRequest()).tree_size == before
    with channel_as("audit-portal", service.grpc_target) as channel:
        portal = ledger_pb2_grpc.LedgerServiceStub(channel)
        # the portal appends for the user it serves: the tenant is the forwarded user's
        alpha_user = ForwardedUser("auditor@alpha.example", "alpha", ("auditor",))
        owned = portal.Append(ledger_pb2.AppendRequest(kind="ig.audit.access", subject="portal/alpha/v1.2.1",
                                                       payload=b"{}", tenant="alpha"),
                              metadata=((USER_TOKEN_METADATA, _user_token("audit-portal", alpha_user)),))
    assert owned.entry.seq == before + 1


def _user_token(signer: str, user: ForwardedUser, lifetime: int = 30, now: float | None = None) -> str:
    identities = Path(os.environ["IG_IDENTITIES"])
    issuer = SpiffeId("maestro.local", "ig", signer)
    return sign_user_token((identities / signer / "tls.key").read_bytes(), issuer, issuer.sibling("evidence"),
                           user, lifetime=lifetime, now=now)


def test_a_user_token_speaks_only_for_the_portal_and_only_on_its_own_connection(service: RunningEvidence,
                                                                                bundle: Path) -> None:
    evidence_stub(service).RegisterBundle(register_requests(bundle / "evidence-v1.2.1.tar.gz", "v1.2.1", "alpha"))
    beta_user = ForwardedUser("auditor@beta.example", "beta", ("auditor",))
    alpha_user = ForwardedUser("auditor@alpha.example", "alpha", ("auditor",))
    request = evidence_pb2.ListReleasesRequest(tenant="alpha")

    def as_portal(token: str) -> evidence_pb2.ListReleasesResponse:
        with channel_as("audit-portal", service.grpc_target) as channel:
            return evidence_pb2_grpc.EvidenceServiceStub(channel).ListReleases(
                request, metadata=((USER_TOKEN_METADATA, token),), timeout=10)

    # The user's own tenant wins over the request's field: beta's auditor asking for alpha sees nothing of alpha.
    assert [r.name for r in as_portal(_user_token("audit-portal", beta_user)).releases] == []
    assert [r.tenant for r in as_portal(_user_token("audit-portal", alpha_user)).releases] == ["alpha"]
    refusals = [
        # signed by another workload's key, sent on the portal's connection
        (_user_token("release", alpha_user), "audit-portal", grpc.StatusCode.UNAUTHENTICATED),
        # expired
        (_user_token("audit-portal", alpha_user, lifetime=10, now=time.time() - 60), "audit-portal",
         grpc.StatusCode.UNAUTHENTICATED),
        # the portal's genuine token replayed by a workload that may not forward users
        (_user_token("audit-portal", alpha_user), "release", grpc.StatusCode.PERMISSION_DENIED),
    ]
    for token, caller, code in refusals:
        with channel_as(caller, service.grpc_target) as channel, pytest.raises(grpc.RpcError) as refused:
            evidence_pb2_grpc.EvidenceServiceStub(channel).ListReleases(
                request, metadata=((USER_TOKEN_METADATA, token),), timeout=10)
        assert refused.value.code() == code, (caller, refused.value.details())
        assert USER_TOKEN_METADATA in refused.value.details()


def test_without_its_checkpoint_key_file_the_service_does_not_start(infra: object, database_url: str,
                                                                    tmp_path: Path) -> None:
    env = {**infra.env(database_url, "evidence"), "IG_HTTP_PORT": str(free_port()),  # type: ignore[attr-defined]
           "IG_GRPC_PORT": str(free_port()), "IG_PUBLIC_PORT": str(free_port()),
           "IG_LEDGER_KEY_PATH": str(tmp_path / "no-such.key"),
           "IG_BLOB_STORE_PATH": str(tmp_path / "blobs"), "PATH": os.environ["PATH"]}
    done = subprocess.run([sys.executable, "-m", "ig_evidence.app"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "invalid setting IG_LEDGER_KEY_PATH" in done.stderr and "no-such.key" in done.stderr


def test_the_same_bundle_registers_once_per_tenant(infra: object, bundle: Path, signers: Path, tmp_path: Path
                                                  ) -> None:
    """Registering a release first no longer makes it "already registered" for another tenant that trusts its signer:
    each tenant gets its own registration, ledger entry and artifact ids, and sees only its own."""
    with evidence_on_own_database(infra, "ig_evidence_tenants", tmp_path / "blobs",
                                  IG_TRUSTED_SIGNERS_PATH=str(signers)) as running:
        stub = evidence_stub(running)
        archive = bundle / "evidence-v1.2.1.tar.gz"
        alpha = stub.RegisterBundle(register_requests(archive, "v1.2.1", "alpha"))
        beta = stub.RegisterBundle(register_requests(archive, "v1.2.1", "beta"))
        again = stub.RegisterBundle(register_requests(archive, "v1.2.1", "beta"))
        assert not alpha.already_registered and not beta.already_registered and again.already_registered
        assert alpha.manifest_sha256 == beta.manifest_sha256 and alpha.ledger_seq != beta.ledger_seq
        assert again.ledger_seq == beta.ledger_seq
        ids = {tenant: {a.name: a.id for a in stub.ListArtifacts(evidence_pb2.ListArtifactsRequest(
            release="v1.2.1", tenant=tenant)).artifacts} for tenant in ("alpha", "beta")}
        assert ids["alpha"].keys() == ids["beta"].keys()
        assert not set(ids["alpha"].values()) & set(ids["beta"].values())
        sbom = ids["beta"]["sbom.spdx.json"]
        parts = list(stub.GetArtifact(evidence_pb2.GetArtifactRequest(artifact_id=sbom, tenant="beta")))
        assert parts[0].artifact.id == sbom and parts[0].artifact.name == "sbom.spdx.json"
        with pytest.raises(grpc.RpcError) as other:
            list(stub.GetArtifact(evidence_pb2.GetArtifactRequest(artifact_id=sbom, tenant="alpha")))
        assert other.value.code() == grpc.StatusCode.NOT_FOUND
