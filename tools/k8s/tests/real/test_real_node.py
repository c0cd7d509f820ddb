"""A real node per region (containerd 2.x + runc + CNI + kubelet 1.37 on this cgroup v1 host), images built here
and imported, never pulled, and a pod that really runs: Ready through its HTTP probe, which the container's own log
on the node shows, reachable at its pod IP from the host, its process a live task of the node's containerd; and
Services with cluster DNS: a pod calls another pod by its Service's DNS name (CoreDNS, kube-proxy in the node's own
network namespace).

Nothing is skipped: a binary or image that cannot be built, or a node that does not come up, fails the test.
Cold (nothing cached) this builds containerd, the kubelet, the Debian base and the service images (minutes). The
nodes and images are the package's (conftest.py), shared with the chart tests; the node-down test runs last.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ig_infra.paths import Paths
from ig_infra.process import has_exited
from ig_k8s.node import NETWORKS, REAL_NODE_LABEL, RealNode
from ig_k8s.node_build import CONTAINERD_VERSION, NodeBinaries
from ig_k8s.node_network import CLUSTER_DNS_IP, netns_path
from ig_k8s.node_proof import prove
from ig_k8s.service_proof import NAMESPACE as SERVICE_NAMESPACE
from ig_k8s.service_proof import prove_services
from ig_k8s.suite import REGIONS, in_parallel

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

SERVICE = "burn"


@pytest.fixture(scope="module")
def proofs(images: dict[str, Any], image_tag: str) -> dict[str, dict[str, Any]]:
    paths = Paths.from_environment()
    return in_parallel({region: (lambda region=region: prove(region, SERVICE, image_tag, paths)) for region in REGIONS})


@pytest.mark.parametrize("region", REGIONS)
def test_node_registers_with_its_own_region_running_containerd_and_the_kubelet(nodes: dict[str, RealNode],
                                                                              region: str) -> None:
    node = nodes[region]
    _, body = node.cluster._get(f"/api/v1/nodes/{node.name}")
    status = json.loads(body)["status"]
    taints = json.loads(body)["spec"].get("taints", [])
    assert {"key": REAL_NODE_LABEL, "value": "real", "effect": "NoSchedule"} in taints  # charts stay off it for now
    assert status["nodeInfo"]["containerRuntimeVersion"] == f"containerd://{CONTAINERD_VERSION.lstrip('v')}"
    assert status["nodeInfo"]["kubeletVersion"] == "v1.37.2"
    assert {"type": "InternalIP", "address": NETWORKS[region].host_address} in status["addresses"]
    other = next(r for r in REGIONS if r != region)
    assert node.cluster._get("/api/v1/nodes")[1].count(RealNode(other).name.encode()) == 0


def test_images_are_imported_into_both_nodes_with_the_same_digest(images: dict[str, Any]) -> None:
    for name, entry in images.items():
        assert set(entry["digests"]) == set(REGIONS), name
        assert len(set(entry["digests"].values())) == 1, f"{name}: the regions hold different images"
        assert entry["size_bytes"] > 0
    containerd_config = (RealNode(REGIONS[0]).dir / "containerd.toml").read_text()
    assert "registry" not in containerd_config  # nothing to pull from: the images were imported


@pytest.mark.parametrize("region", REGIONS)
def test_a_pod_is_ready_by_its_probe_and_its_process_really_runs(proofs: dict[str, dict[str, Any]],
                                                                 region: str) -> None:
    proof = proofs[region]["probed"]
    assert proofs[region]["node"] == RealNode(region).name
    assert proof["probe_requests_in_log"] >= 1  # the kubelet's probe reached the server: its log says so
    assert proof["host_get_status"] == 200
    assert proof["pod_ip"].startswith(NETWORKS[region].subnet.rsplit(".", 1)[0] + ".")
    assert "http.server" in proof["task_cmdline"] and proof["task_uid"] == 10001


@pytest.mark.parametrize("region", REGIONS)
def test_the_service_image_entrypoint_runs_the_service(proofs: dict[str, dict[str, Any]], region: str) -> None:
    """Without its settings the service stops with exit 2 naming them: the image's package really ran."""
    entrypoint = proofs[region]["entrypoint"]
    assert entrypoint["exit_code"] == 2
    assert any("invalid setting IG_DATABASE_URL" in line for line in entrypoint["log_tail"])


@pytest.fixture(scope="module")
def service_proofs(images: dict[str, Any], image_tag: str) -> dict[str, dict[str, Any]]:
    paths = Paths.from_environment()
    return in_parallel({region: (lambda region=region: prove_services(region, SERVICE, image_tag, paths))
                        for region in REGIONS})


@pytest.mark.parametrize("region", REGIONS)
def test_a_pod_reaches_another_pod_through_its_service_dns_name(service_proofs: dict[str, dict[str, Any]],
                                                                region: str) -> None:
    """CoreDNS (behind the kube-dns ClusterIP) resolves the Service's name to its ClusterIP, and kube-proxy's NAT in
    the node's namespace carries the client's GET to the server pod: the server saw it from the bridge address
    (masquerade), not from the client pod's own address."""
    proof = service_proofs[region]
    network = NETWORKS[region]
    assert f"nameserver {CLUSTER_DNS_IP}" in proof["resolv_conf"]
    assert f"search {SERVICE_NAMESPACE}.svc.cluster.local" in proof["resolv_conf"]
    assert proof["resolved"] == [proof["cluster_ip"]]
    assert proof["cluster_ip"].startswith("10.96.") and proof["cluster_ip"] != proof["web_pod_ip"]
    assert proof["status"] == 200 and "Directory listing" in proof["body"]
    assert proof["absent"] != "resolved"  # a name with no Service is not answered: the resolver is the cluster's
    assert network.gateway in proof["server_saw_from"]
    assert proof["client_pod_ip"] not in proof["server_saw_from"]


@pytest.mark.parametrize("region", REGIONS)
def test_service_rules_live_in_the_node_namespace_not_the_hosts(service_proofs: dict[str, dict[str, Any]],
                                                                region: str) -> None:
    """Both regions' kube-proxies on one host: each one's chains are in its own node namespace only."""
    proof = service_proofs[region]
    assert f"-d {proof['cluster_ip']}/32" in proof["node_netns_rules"]
    assert f"{SERVICE_NAMESPACE}/web:http cluster IP" in proof["node_netns_rules"]
    assert "KUBE-SERVICES" not in proof["host_rules"]
    other = NETWORKS[next(r for r in REGIONS if r != region)]
    # kube-dns leads to this region's CoreDNS only: the other region's rules are not here.
    assert f"--to-destination {NETWORKS[region].host_address}:53" in proof["node_netns_rules"]
    assert f"--to-destination {other.host_address}:53" not in proof["node_netns_rules"]


@pytest.mark.stops_real_nodes
def test_node_down_leaves_nothing_running(nodes: dict[str, RealNode], proofs: dict[str, dict[str, Any]],
                                         service_proofs: dict[str, dict[str, Any]]) -> None:
    binaries = NodeBinaries.cached(Paths.from_environment())
    for region, node in nodes.items():
        task_pid = proofs[region]["probed"]["task_pid"]
        assert Path(f"/proc/{task_pid}").exists()
        node.stop(binaries)
        assert not node.running()
        # Exited is enough: once its shim is gone the process is init's to reap, which this machine's does lazily.
        assert not Path(f"/proc/{task_pid}").exists() or has_exited(task_pid), "a container process outlived its node"
        assert not _processes_mentioning(str(node.dir)), "a node process is still running"
        mounts = Path("/proc/self/mounts").read_text()
        assert f" {node.dir}/" not in mounts and f" {node.dir} " not in mounts
        assert subprocess.run(["ip", "link", "show", node.network.bridge], capture_output=True).returncode != 0
        assert not netns_path(node.network).exists()
        assert subprocess.run(["ip", "link", "show", node.network.host_veth], capture_output=True).returncode != 0
        assert not Path("/sys/fs/cgroup/memory", node.cgroup_parent.lstrip("/")).exists()
        assert not (node.dir / "containerd" / "root").exists(), "the node's images outlived it (disk leak)"


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline:
                found.append(f"{proc.name}: {cmdline[:200]}")
    return found
