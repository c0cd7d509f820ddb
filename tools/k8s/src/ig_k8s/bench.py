"""`make bench-k8s`: how long the delivery checks and a simulated region take (figures, no assertions)."""

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


def _timed(action: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def run(output: Path) -> dict[str, Any]:
    from kubernetes import client

    from ig_k8s.cluster import Binaries, SimulatedCluster
    from ig_k8s.kube import api_client
    from ig_k8s.releases import ensure_namespace, install, load_release_set

    paths = Paths.from_environment()
    helm = Helm.create(paths)
    figures: dict[str, Any] = {}
    render_total = validate_total = 0.0
    for service in SERVICES:
        for region in REGIONS:
            seconds, rendered = _timed(lambda s=service, r=region: helm.template(s.chart_dir, r, release=s.name))
            render_total += seconds
            seconds, _ = _timed(lambda text=rendered: (kubeconform(text), policy_violations(manifests(text))))
            validate_total += seconds
    figures["helm_template_all_charts_both_regions_s"] = round(render_total, 2)
    figures["kubeconform_and_rego_all_charts_both_regions_s"] = round(validate_total, 2)
    binaries = Binaries.cached(paths)
    if binaries is not None:
        _, releases = load_release_set()
        for region in REGIONS:
            cluster = SimulatedCluster(region, paths)
            was_up = cluster.healthy()
            seconds, _ = _timed(lambda c=cluster: c.start(binaries))
            figures[f"{region}_cluster_start_s"] = round(seconds, 2) if not was_up else "already running"
            namespace = f"ig-bench-{secrets.token_hex(3)}"
            ensure_namespace(api_client(cluster.kubeconfig), namespace)
            seconds, _ = _timed(lambda c=cluster, ns=namespace: [install(helm, c, r, ns) for r in releases])
            figures[f"{region}_install_{len(releases)}_releases_until_available_s"] = round(seconds, 2)
            client.CoreV1Api(api_client(cluster.kubeconfig)).delete_namespace(namespace)
            if not was_up:
                cluster.stop()
    else:
        figures["clusters"] = "skipped: Kubernetes binaries not built (uv run ig-k8s build)"
    figures["machine_cpus"] = os.cpu_count()
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(figures, indent=2))
    for key, value in figures.items():
        print(f"  {key}: {value}")
    return figures
