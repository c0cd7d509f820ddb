"""`make bench-k8s`: how long the delivery checks, a simulated region and the whole suite on the real nodes take, and
the memory the real nodes and their pods use (figures, no assertions)."""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

from ig_infra.paths import Paths

from ig_k8s.helm import Helm, manifests
from ig_k8s.suite import REGIONS, SERVICES
from ig_k8s.validate import kubeconform, policy_violations

# The real bring-up's own namespace and image tag: `make k8s-up`'s releases (namespace ig, tag dev) are left alone.
REAL_NAMESPACE = "ig-bench"
REAL_TAG = "bench"
MB = 1_000_000


def _timed(action: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def _checks(helm: Helm) -> dict[str, Any]:
    render_total = validate_total = 0.0
    for service in SERVICES:
        for region in REGIONS:
            seconds, rendered = _timed(lambda s=service, r=region: helm.template(s.chart_dir, r, release=s.name))
            render_total += seconds
            seconds, _ = _timed(lambda text=rendered: (kubeconform(text), policy_violations(manifests(text))))
            validate_total += seconds
    return {"helm_template_all_charts_both_regions_s": round(render_total, 2),
            "kubeconform_and_rego_all_charts_both_regions_s": round(validate_total, 2)}


def _simulated(helm: Helm, paths: Paths) -> dict[str, Any]:
    """A cluster start and the release set installed on kwok nodes (simulated: no container runs)."""
    from kubernetes import client

    from ig_k8s.cluster import Binaries, SimulatedCluster
    from ig_k8s.kube import api_client
    from ig_k8s.releases import ensure_namespace, install, load_release_set

    binaries = Binaries.cached(paths)
    if binaries is None:
        return {"clusters": "not measured: Kubernetes binaries not built (uv run ig-k8s build)"}
    figures: dict[str, Any] = {}
    _, releases = load_release_set()
    for region in REGIONS:
        cluster = SimulatedCluster(region, paths)
        was_up = cluster.healthy()
        seconds, _ = _timed(lambda c=cluster: c.start(binaries))
        figures[f"{region}_cluster_start_s"] = round(seconds, 2) if not was_up else "already running"
        namespace = f"ig-bench-{secrets.token_hex(3)}"
        ensure_namespace(api_client(cluster.kubeconfig), namespace)
        seconds, _ = _timed(lambda c=cluster, ns=namespace: [install(helm, c, r, ns) for r in releases])
        figures[f"{region}_kwok_install_{len(releases)}_releases_until_available_s"] = round(seconds, 2)
        client.CoreV1Api(api_client(cluster.kubeconfig)).delete_namespace(namespace)
        if not was_up:
            cluster.stop(forget=True)
    return figures


def _real(helm: Helm, paths: Paths) -> dict[str, Any]:
    """The suite brought up as `make k8s-up` does (RealSuite.up) in a namespace of its own, the memory taken once
    every pod is Ready, then what it started stopped again."""
    from ig_k8s.node import RealNode
    from ig_k8s.node_memory import node_memory
    from ig_k8s.real_suite import RealSuite

    running_before = {region: RealNode(region, paths).running() for region in REGIONS}
    suite = RealSuite(paths, REGIONS, REAL_TAG, REAL_NAMESPACE)
    try:
        suite.up(helm)
        memory = {region: node_memory(node) for region, node in suite.nodes.items()}
    finally:
        suite.release(helm)
    images = {name: {"build_s": entry["build_seconds"], "size_mb": round(entry["size_bytes"] / MB, 1)}
              for name, entry in suite.images.items()}
    figures: dict[str, Any] = {"nodes_were_running_before": running_before, "seconds": suite.seconds,
                               "images": images}
    for region, measured in memory.items():
        ours = {name: pod for name, pod in measured["pods"].items() if name.startswith(f"{REAL_NAMESPACE}/")}
        figures[f"{region}_memory_mb"] = {
            "node_processes_rss": {name: round(value / MB, 1)
                                   for name, value in measured["node_processes_rss_bytes"].items()},
            "node_processes_rss_total": round(measured["node_processes_rss_total_bytes"] / MB, 1),
            "suite_pods": len(ours),
            "suite_pods_working_set_total": round(sum(p["working_set_bytes"] for p in ours.values()) / MB, 1),
            "all_pods_on_node_working_set_total": round(measured["pods_total"]["working_set_bytes"] / MB, 1),
            "per_pod_working_set": {name: round(p["working_set_bytes"] / MB, 1) for name, p in ours.items()}}
    figures["memory_raw_bytes"] = memory
    return figures


def run(output: Path) -> dict[str, Any]:
    paths = Paths.from_environment()
    helm = Helm.create(paths)
    figures: dict[str, Any] = {**_checks(helm), "simulated": _simulated(helm, paths), "real": _real(helm, paths),
                               "machine_cpus": os.cpu_count(), "load_average_at_end": os.getloadavg()}
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(figures, indent=2))
    for key, value in figures.items():
        if key == "real":
            for real_key, real_value in value.items():
                if real_key != "memory_raw_bytes":
                    print(f"  real.{real_key}: {json.dumps(real_value)}")
        else:
            print(f"  {key}: {json.dumps(value)}")
    return figures
