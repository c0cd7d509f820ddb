"""The images the real nodes run are subjects of the release's signed provenance (issue #22 item 2).

``RealSuite.up`` (what `make k8s-up` runs) writes the subjects of the images it built, name and manifest digest
(images.release_subjects); ``ig-evidence build --subjects`` attests them in the provenance beside the bundle's
artifacts, and ``ig-evidence verify --subject`` checks a running image against it. The test ties the attested digest
to what runs: for every container of the suite in both regions, the kubelet's imageID (the image's config digest:
an image imported, not pulled, has no repository digest) is the config the attested manifest names in that node's
own containerd content store. Nothing skips.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ig_infra.paths import REPO_ROOT
from ig_k8s.images import subjects_path
from ig_k8s.kube import api_client
from ig_k8s.node import RealNode
from ig_k8s.node_build import NodeBinaries
from ig_k8s.real_charts import NAMESPACE
from ig_k8s.real_suite import RealSuite
from ig_k8s.suite import REGIONS
from kubernetes import client

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

CONTRACT = REPO_ROOT / "policies" / "evidence" / "release-contract.v1.yaml"


def ig_evidence(*args: str) -> subprocess.CompletedProcess[str]:
    cli = Path(sys.executable).with_name("ig-evidence")
    return subprocess.run([str(cli), *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "SOURCE_DATE_EPOCH": "1767225600"})


def running_containers(node: RealNode) -> list[tuple[str, str]]:
    """(image, imageID) of every running container of the suite's namespace on the region's node."""
    core = client.CoreV1Api(api_client(node.cluster.kubeconfig))
    found = []
    for pod in core.list_namespaced_pod(NAMESPACE).items:
        if pod.status.phase != "Running":
            continue
        for status in pod.status.container_statuses or []:
            found.append((status.image, status.image_id))
    return found


def config_of(node: RealNode, binaries: NodeBinaries, manifest_digest: str) -> str:
    """The config digest of a manifest, read from the node's containerd content store."""
    content = node.ctr(binaries, "content", "get", manifest_digest)
    assert content.returncode == 0, content.stderr
    return str(json.loads(content.stdout)["config"]["digest"])


def test_every_image_the_nodes_run_is_attested_by_the_releases_signed_provenance(
        suite: RealSuite, nodes: dict[str, RealNode], image_tag: str, tmp_path: Path) -> None:
    subjects_file = subjects_path(suite.paths, image_tag)
    subjects = {s["name"]: f"sha256:{s['digest']['sha256']}" for s in json.loads(subjects_file.read_text())}
    binaries = NodeBinaries.cached(suite.paths)
    running: set[str] = set()
    for region in REGIONS:
        containers = running_containers(nodes[region])
        assert len(containers) >= 6, (region, containers)
        for image, image_id in containers:
            assert image in subjects, f"{region} runs {image}, which the release's subjects do not name"
            assert config_of(nodes[region], binaries, subjects[image]) == image_id, (region, image)
            running.add(image)
    assert {f"localhost/ig/{name}:{image_tag}" for name in ("policy", "evidence", "burn", "migration",
                                                             "audit-portal")} <= running

    keys = tmp_path / "keys"
    assert ig_evidence("keygen", "--out", str(keys)).returncode == 0
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    built = ig_evidence("build", "--release", "v1.2.1", "--inputs", str(inputs), "--out", str(tmp_path / "bundle"),
                        "--key", str(keys / "cosign.key"), "--contract", str(CONTRACT), "--allow-incomplete",
                        "--repo-root", str(REPO_ROOT), "--subjects", str(subjects_file))
    assert built.returncode == 0, built.stdout + built.stderr
    wanted = [f"--subject={image}@{subjects[image]}" for image in sorted(running)]
    verified = ig_evidence("verify", str(tmp_path / "bundle"), "--key", str(keys / "cosign.pub"), "--contract",
                           str(CONTRACT), "--allow-incomplete", *wanted)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    for image in running:
        assert f"its provenance also attests {image}@{subjects[image]}" in verified.stdout
    # The same check refuses an image the release did not build: one digest off.
    image = sorted(running)[0]
    other = subjects[image][:-1] + ("0" if subjects[image][-1] != "0" else "1")
    refused = ig_evidence("verify", str(tmp_path / "bundle"), "--key", str(keys / "cosign.pub"), "--allow-incomplete",
                          f"--subject={image}@{other}")
    assert refused.returncode == 1 and "not attested by the provenance" in refused.stderr, refused.stderr
