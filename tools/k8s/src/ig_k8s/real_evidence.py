"""The evidence service on the real nodes (issue #22 items 3 and 5): what its release needs beyond the others, and
the calls that show its blobs outlive its pods.

The chart keeps the blobs on one PersistentVolumeClaim that every replica mounts (``persistence.*``, ReadWriteMany;
charts/README.md says why that over MinIO or blobs in PostgreSQL); here the claim is bound to a hostPath volume under
the region's run dir (volumes.py). The release needs two things a kwok node never asked for: its ledger's checkpoint
key in a Secret (the pod does not start without it) and a signer pinned for a tenant, without which every
RegisterBundle is refused.

The test client calls the pods from the host: the host routes each pod subnet to its node, and the client dials a
pod's address with the Service's DNS name as the TLS name its certificate carries, so one call lands on one chosen
pod (through the Service, kube-proxy would pick).
"""

from __future__ import annotations

import hashlib
import tarfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from ig.evidence.v1 import evidence_pb2, evidence_pb2_grpc
from ig_common.grpc_client import secure_channel
from ig_common.tls import WorkloadCertificate
from ig_infra.paths import Paths
from ig_infra.pki import DevCA, ca_directory
from kubernetes import client

from ig_k8s.kube import api_client, secret_exists
from ig_k8s.node import RealNode

RELEASE = "evidence"
GRPC_PORT = 50052
# The tenant the test registers for: one the `release` identity may act for (policies/authz/grpc-methods.yaml) and
# that both regions serve. alpha is pinned to region-a, so region-b's evidence service refuses it (residency).
TENANT = "beta"
SIGNER_NAME = "real-node release key"
CLIENT_IDENTITY = "release"

_KEY_LOCK = threading.Lock()


def release_signing_key(paths: Paths) -> Path:
    """A cosign key pair (``ig-evidence keygen``), made once per run dir: the key the test signs bundles with and
    the release pins for ``TENANT``. Both regions' installs ask for it at once."""
    from ig_evidence.keys import generate_key_pair

    directory = paths.component_dir("k8s") / "evidence-release-key"
    with _KEY_LOCK:
        if not (directory / "cosign.key").exists():
            generate_key_pair(directory, None, force=True)
    return directory


def evidence_values(paths: Paths) -> dict[str, Any]:
    """The signer the release trusts for ``TENANT`` (the chart renders it into the trusted-signers ConfigMap)."""
    public = (release_signing_key(paths) / "cosign.pub").read_text()
    return {"trust": {"tenants": {TENANT: [{"name": SIGNER_NAME, "publicKey": public}]}}}


def ensure_ledger_key_secret(node: RealNode, name: str, namespace: str) -> None:
    """The ledger's Ed25519 checkpoint key (PEM, PKCS#8) in the Secret the chart mounts: made once and kept, since
    a new key would make the checkpoints already signed unverifiable."""
    core = client.CoreV1Api(api_client(node.cluster.kubeconfig))
    if secret_exists(core, name, namespace):
        return
    pem = Ed25519PrivateKey.generate().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption())
    core.create_namespaced_secret(namespace, {"metadata": {"name": name}, "type": "Opaque",
                                              "stringData": {"ledger-checkpoint.key": pem.decode()}})


def client_certificate(node: RealNode, namespace: str, directory: Path) -> WorkloadCertificate:
    """A certificate of the ``release`` identity in the release's namespace (the service admits callers of its own
    trust domain and namespace only), from the CA that issued the service's."""
    ca = DevCA.load_or_create(ca_directory(node.cluster.paths.cache))
    ca.issue(CLIENT_IDENTITY, directory, namespace=namespace, dns_names=(), ip_addresses=())
    return WorkloadCertificate(directory)


@dataclass(frozen=True)
class PodClient:
    """EvidenceService on one pod, reached at its own address."""

    pod: str
    stub: evidence_pb2_grpc.EvidenceServiceStub
    channel: grpc.Channel

    @classmethod
    def to(cls, pod: dict[str, Any], certificate: WorkloadCertificate, namespace: str) -> PodClient:
        name = f"{RELEASE}.{namespace}.svc.cluster.local"  # a DNS name of the service's certificate
        channel = secure_channel(f"{pod['ip']}:{GRPC_PORT}", certificate,
                                 # The pod's address is this host's route to the node: never a proxy's.
                                 [("grpc.ssl_target_name_override", name), ("grpc.enable_http_proxy", 0)])
        return cls(pod["name"], evidence_pb2_grpc.EvidenceServiceStub(channel), channel)

    def read_artifacts(self, release: str) -> dict[str, bytes]:
        """Every artifact of ``release`` by name, its bytes as GetArtifact streams them."""
        listed = self.stub.ListArtifacts(evidence_pb2.ListArtifactsRequest(release=release, tenant=TENANT),
                                         timeout=30).artifacts
        found = {}
        for artifact in listed:
            parts = list(self.stub.GetArtifact(evidence_pb2.GetArtifactRequest(artifact_id=artifact.id,
                                                                                tenant=TENANT), timeout=30))
            found[artifact.name] = b"".join(part.chunk for part in parts[1:])
        return found

    def manifest(self, release: str) -> bytes:
        """manifest.json as GetManifest reads it out of the stored bundle archive (a blob too)."""
        answer = self.stub.GetManifest(evidence_pb2.GetManifestRequest(release=release, tenant=TENANT), timeout=30)
        return bytes(answer.manifest)

    def close(self) -> None:
        self.channel.close()


def bundle_contents(archive: Path, manifest: dict[str, Any]) -> dict[str, bytes]:
    """Each artifact the manifest lists, by name, byte for byte as the bundle carries it."""
    from ig_evidence.domain.manifest import artifacts_of

    paths = {record.path: record.name for record in artifacts_of(manifest)}
    found = {}
    with tarfile.open(archive, "r:*") as tar:
        for member in tar:
            if member.name in paths and member.isreg():
                handle = tar.extractfile(member)
                assert handle is not None
                found[paths[member.name]] = handle.read()
    return found


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def replace_all_pods(node: RealNode, release: str, namespace: str, timeout: float = 180) -> list[dict[str, Any]]:
    """Delete every workload pod of ``release`` at once (grace 0: as a crash or a node's loss would) and wait until
    as many new ones are Ready and the old ones are gone; returns the new pods."""
    from ig_k8s.real_charts import release_pods

    core = client.CoreV1Api(api_client(node.cluster.kubeconfig))
    before = release_pods(node, release, namespace)
    old = {pod["uid"] for pod in before}
    selector = f"app.kubernetes.io/instance={release},app.kubernetes.io/component!=helm-test"
    core.delete_collection_namespaced_pod(namespace, label_selector=selector, grace_period_seconds=0)
    deadline = time.monotonic() + timeout
    while True:
        pods = release_pods(node, release, namespace)
        new = [pod for pod in pods if pod["uid"] not in old]
        if len(new) >= len(before) and all(pod["ready"] for pod in new) and len(pods) == len(new):
            return new
        if time.monotonic() > deadline:
            raise RuntimeError(f"{release} on {node.region}: no {len(before)} new Ready pods within {timeout} s: "
                               f"{pods}")
        time.sleep(0.5)
