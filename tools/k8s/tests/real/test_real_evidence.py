"""The evidence service as real pods in both regions (issue #22 item 5): a bundle registered through one pod is read
back, every artifact byte for byte, from every replica, and again from the pods that replace them all.

The blobs live on the chart's one PersistentVolumeClaim (``persistence.*``) that every replica mounts; their
metadata in PostgreSQL. The release is installed by the package's ``installed`` fixture (conftest.py) with a signer
pinned for the tenant (ig_k8s.real_evidence). Nothing skips.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from ig_evidence.bundle.upload import register_requests
from ig_evidence.testing import cli, write_inputs
from ig_k8s.node import RealNode
from ig_k8s.real_charts import NAMESPACE, release_pods
from ig_k8s.real_evidence import (
    RELEASE,
    TENANT,
    PodClient,
    bundle_contents,
    client_certificate,
    digest,
    release_signing_key,
    replace_all_pods,
)
from ig_k8s.suite import REGIONS

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

# Over one GetArtifact chunk (1 MiB), so a blob read back is several chunks put together.
PAYLOAD_BYTES = (2 << 20) + 12345


def _bundle(directory: Path, release: str, key: Path) -> tuple[Path, dict[str, Any], bytes]:
    """A signed bundle whose artifacts exist nowhere before this run: a stale blob from an earlier run (the volume
    is kept) cannot stand in for one this run wrote."""
    inputs = write_inputs(directory / "inputs", ["load-report", "dr-log"])
    for artifact in inputs.rglob("*.json"):
        artifact.write_text(artifact.read_text().rstrip("}\n") + f', "run": "{release}"}}\n')
    (inputs / "load-report" / "payload.bin").write_bytes(os.urandom(PAYLOAD_BYTES))
    out = directory / "out"
    cli("build", "--release", release, "--inputs", str(inputs), "--out", str(out), "--key", str(key),
        "--allow-incomplete")
    archive = out / f"evidence-{release}.tar.gz"
    return archive, json.loads((out / "manifest.json").read_text()), (out / "manifest.json").read_bytes()


def _read_from_each(pods: list[dict[str, Any]], certificate: Any, release: str) -> dict[str, tuple[dict[str, bytes],
                                                                                                     bytes]]:
    read = {}
    for pod in pods:
        client = PodClient.to(pod, certificate, NAMESPACE)
        try:
            read[pod["name"]] = (client.read_artifacts(release), client.manifest(release))
        finally:
            client.close()
    return read


@pytest.mark.parametrize("region", REGIONS)
def test_an_evidence_pod_restarted_keeps_every_blob(installed: dict[str, dict[str, Any]],
                                                    nodes: dict[str, RealNode], region: str, tmp_path: Path) -> None:
    node = nodes[region]
    release = f"v0.{int(time.time())}-{uuid.uuid4().hex[:8]}"
    archive, manifest, manifest_bytes = _bundle(tmp_path, release, release_signing_key(node.cluster.paths)
                                                / "cosign.key")
    expected = bundle_contents(archive, manifest)
    assert "payload.bin" in expected and len(expected["payload.bin"]) == PAYLOAD_BYTES
    assert len(expected) == len(manifest["artifacts"])
    certificate = client_certificate(node, NAMESPACE, tmp_path / "client-tls")

    pods = release_pods(node, RELEASE)
    assert len(pods) >= 2 and all(pod["ready"] for pod in pods), pods
    first = PodClient.to(pods[0], certificate, NAMESPACE)
    try:
        registered = first.stub.RegisterBundle(register_requests(archive, release, TENANT), timeout=120)
    finally:
        first.close()
    assert not registered.already_registered
    assert registered.manifest_sha256 == digest(manifest_bytes)

    # Every replica serves what one of them stored: the claim is shared, not per pod.
    for name, (artifacts, stored_manifest) in _read_from_each(pods, certificate, release).items():
        assert artifacts == expected, f"{name}: {sorted(artifacts)} != {sorted(expected)}"
        assert stored_manifest == manifest_bytes, name

    replaced = replace_all_pods(node, RELEASE, NAMESPACE)
    assert {pod["uid"] for pod in replaced}.isdisjoint(pod["uid"] for pod in pods)
    for name, (artifacts, stored_manifest) in _read_from_each(replaced, certificate, release).items():
        assert {artifact: digest(data) for artifact, data in artifacts.items()} == \
            {artifact: digest(data) for artifact, data in expected.items()}, name
        assert stored_manifest == manifest_bytes, name
