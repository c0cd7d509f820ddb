"""The memory a real node and its pods take, read on the host (``make bench-k8s``, ``ig-k8s memory``).

The node's own processes by resident set (``VmRSS`` of /proc/<pid>/status): containerd, the kubelet, kube-proxy,
CoreDNS, and the containerd shims (one per pod; they live outside the pods' cgroups). Each pod by its memory cgroup
(cgroup v1, this host: ``<memory>/ig-<region>/kubepods[/<qos>]/pod<uid>``, the kubelet's cgroupfs layout): usage as
the kernel charges it (page cache included) and the working set (usage less inactive file pages), the figure the
kubelet's eviction and ``kubectl top`` use.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ig_k8s.node import RealNode

MEMORY_HIERARCHY = Path("/sys/fs/cgroup/memory")


def rss_bytes(pid: int) -> int:
    """0 when the process has gone (or is a zombie, which has no VmRSS line)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def cgroup_memory(directory: Path) -> dict[str, int]:
    usage = int((directory / "memory.usage_in_bytes").read_text())
    stat = dict(line.split() for line in (directory / "memory.stat").read_text().splitlines())
    # The hierarchical total: a pod's own cgroup holds none of it, its containers' children do.
    inactive_file = int(stat.get("total_inactive_file", 0))
    return {"usage_bytes": usage, "working_set_bytes": max(0, usage - inactive_file),
            "rss_bytes": int(stat.get("total_rss", 0))}


def pod_cgroups(node: RealNode) -> dict[str, Path]:
    """Each pod's memory cgroup on the node, by pod UID."""
    root = MEMORY_HIERARCHY / node.cgroup_parent.lstrip("/") / "kubepods"
    found = {}
    for directory in [*root.glob("pod*"), *root.glob("*/pod*")] if root.is_dir() else []:
        if directory.is_dir():
            found[directory.name.removeprefix("pod")] = directory
    return found


def node_memory(node: RealNode) -> dict[str, Any]:
    """The node's processes' RSS, each running pod's cgroup figures (by ``namespace/name``) and their totals."""
    from kubernetes import client

    from ig_k8s.kube import api_client

    processes = {name: rss_bytes(pid) for name in node.PROCESSES if (pid := node.pid(name)) is not None}
    shims = node.shim_pids()
    processes["containerd-shims"] = sum(rss_bytes(pid) for pid in shims)
    core = client.CoreV1Api(api_client(node.cluster.kubeconfig))
    names = {pod.metadata.uid: f"{pod.metadata.namespace}/{pod.metadata.name}"
             for pod in core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node.name}").items}
    pods = {}
    for uid, directory in pod_cgroups(node).items():
        with contextlib.suppress(OSError):  # a pod that ended between the listing and the read
            pods[names.get(uid, f"(deleted) {uid}")] = cgroup_memory(directory)
    return {"node_processes_rss_bytes": processes, "shims": len(shims),
            "node_processes_rss_total_bytes": sum(processes.values()),
            "pods": dict(sorted(pods.items())),
            "pods_total": {key: sum(pod[key] for pod in pods.values())
                           for key in ("usage_bytes", "working_set_bytes", "rss_bytes")}}
