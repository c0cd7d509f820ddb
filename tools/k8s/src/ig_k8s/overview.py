"""What `make k8s-up` and `ig-k8s status` print per region: its addresses, its pods, and the images they run with
each image's size and digest.

``render`` is pure (a RegionState in, text out) so the printing is tested without a cluster; ``collect`` reads the
state from the region's API server, its real node's containerd when one runs, and the image archives built here.
A pod on a kwok node runs nothing, so its image may exist nowhere on this machine: it is printed as not built here.
"""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ig_infra.paths import Paths

    from ig_k8s.cluster import SimulatedCluster
    from ig_k8s.node import RealNode

# The namespaces of the cluster's own machinery: not the suite's pods or addresses.
SYSTEM_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease", "default"})
REF_ANNOTATION = "org.opencontainers.image.ref.name"


@dataclass(frozen=True)
class PodRow:
    namespace: str
    name: str
    node: str
    ready: bool
    ip: str  # empty until the pod has one
    image: str


@dataclass(frozen=True)
class ImageRow:
    name: str
    size_bytes: int | None = None  # the OCI archive a node imports; None: not built on this machine
    digest: str = ""  # the manifest digest (the provenance subject)


@dataclass(frozen=True)
class ServiceRow:
    namespace: str
    name: str
    cluster_ip: str
    ports: tuple[tuple[str, int], ...]  # (name, port)


@dataclass(frozen=True)
class RegionState:
    region: str
    api_server: str
    kubeconfig: str
    real_node: str = ""  # "<name> <InternalIP>" when the region's real node runs
    pods: list[PodRow] = field(default_factory=list)
    images: list[ImageRow] = field(default_factory=list)
    services: list[ServiceRow] = field(default_factory=list)


def human_size(size: int) -> str:
    """Decimal megabytes, as the README's image tables give them."""
    return f"{size / 1_000_000:.1f} MB" if size >= 100_000 else f"{size / 1000:.1f} kB"


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["    " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            for row in rows]


def render(state: RegionState) -> str:
    lines = [f"{state.region}: kube-apiserver {state.api_server}, kubeconfig {state.kubeconfig}",
             f"  real node: {state.real_node or 'none (kwok nodes only: pods are simulated, no container runs)'}"]
    services = sorted(state.services, key=lambda s: (s.namespace, s.name))
    lines.append(f"  addresses ({len(services)} Services):")
    if services:
        lines += _table([(f"{s.namespace}/{s.name}", s.cluster_ip or "None",
                          ", ".join(f"{name} {port}" for name, port in s.ports)) for s in services])
    pods = sorted(state.pods, key=lambda p: (p.namespace, p.name))
    ready = sum(pod.ready for pod in pods)
    lines.append(f"  pods ({ready}/{len(pods)} Ready):")
    if pods:
        lines += _table([(f"{p.namespace}/{p.name}", p.node or "(unscheduled)", "Ready" if p.ready else "not ready",
                          p.ip or "-", p.image) for p in pods])
    images = sorted(state.images, key=lambda i: i.name)
    lines.append(f"  images ({len(images)}):")
    if images:
        lines += _table([(i.name, human_size(i.size_bytes) if i.size_bytes is not None else "not built here",
                          i.digest or "-") for i in images])
    return "\n".join(lines)


def archive_refs(directory: Path) -> dict[str, ImageRow]:
    """The image archives built here (images.py), by the image name each carries, with size and manifest digest."""
    found: dict[str, ImageRow] = {}
    for archive in sorted(directory.glob("*.oci.tar")) if directory.is_dir() else []:
        try:
            with tarfile.open(archive) as tar:
                handle = tar.extractfile("index.json")
                index = json.load(handle) if handle is not None else {}
        except (OSError, KeyError, tarfile.TarError, ValueError):
            continue  # being written, or not an OCI archive
        for manifest in index.get("manifests", []):
            name = manifest.get("annotations", {}).get(REF_ANNOTATION, "")
            if name:
                found[name] = ImageRow(name, archive.stat().st_size, manifest.get("digest", ""))
    return found


def collect(cluster: SimulatedCluster, node: RealNode | None, paths: Paths) -> RegionState:
    from kubernetes import client

    from ig_k8s.images import images_dir
    from ig_k8s.kube import api_client

    core = client.CoreV1Api(api_client(cluster.kubeconfig))
    pods = []
    for pod in core.list_pod_for_all_namespaces().items:
        if pod.metadata.namespace in SYSTEM_NAMESPACES:
            continue
        conditions = {c.type: c.status for c in pod.status.conditions or []}
        for container in pod.spec.containers:
            pods.append(PodRow(pod.metadata.namespace, pod.metadata.name if len(pod.spec.containers) == 1
                               else f"{pod.metadata.name} [{container.name}]", pod.spec.node_name or "",
                               conditions.get("Ready") == "True", pod.status.pod_ip or "", container.image))
    services = [ServiceRow(s.metadata.namespace, s.metadata.name, s.spec.cluster_ip or "",
                           tuple((p.name or str(p.port), p.port) for p in s.spec.ports or []))
                for s in core.list_service_for_all_namespaces().items
                if s.metadata.namespace not in SYSTEM_NAMESPACES]
    built = archive_refs(images_dir(paths))
    on_node = node_digests(node, paths) if node is not None and node.running() else {}
    images = []
    for name in sorted({pod.image for pod in pods}):
        row = built.get(name, ImageRow(name))
        images.append(ImageRow(name, row.size_bytes, on_node.get(name, row.digest)))
    real = f"{node.name} {node.network.host_address}" if node is not None and node.running() else ""
    return RegionState(cluster.region, cluster.server, str(cluster.kubeconfig), real, pods, images, services)


def node_digests(node: RealNode, paths: Paths) -> dict[str, str]:
    """Each image in the node's containerd by name, with the manifest digest containerd records."""
    from ig_k8s.node_build import NodeBinaries

    binaries = NodeBinaries.cached(paths)
    if binaries is None:
        return {}
    listed = node.ctr(binaries, "images", "list")
    found = {}
    for line in listed.stdout.splitlines()[1:]:
        fields = line.split()
        digest = next((f for f in fields if f.startswith("sha256:")), "")
        if fields and digest:
            found[fields[0]] = digest
    return found
