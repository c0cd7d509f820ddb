"""The release set (charts/releases.yaml): install, upgrade and roll back the suite in a simulated cluster."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from ig_k8s.cluster import SimulatedCluster
from ig_k8s.helm import Helm
from ig_k8s.kube import api_client
from ig_k8s.suite import CHARTS_DIR, region_values

RELEASES_FILE = CHARTS_DIR / "releases.yaml"


@dataclass(frozen=True)
class Release:
    name: str
    chart: str
    image: str

    @property
    def chart_dir(self) -> Path:
        return CHARTS_DIR / self.chart


def load_release_set(path: Path = RELEASES_FILE) -> tuple[str, list[Release]]:
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    return document["namespace"], [Release(**item) for item in document["releases"]]


def ensure_namespace(api: client.ApiClient, namespace: str) -> None:
    """The namespace enforces the restricted Pod Security Standard: the API server itself rejects any pod that
    breaks it, so an install that succeeds proves the charts comply."""
    labels = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "audit", "warn")}
    labels["pod-security.kubernetes.io/enforce-version"] = "latest"
    body = {"metadata": {"name": namespace, "labels": labels}}
    core = client.CoreV1Api(api)
    try:
        core.create_namespace(body)
    except ApiException as error:
        if error.status != 409:
            raise
        core.patch_namespace(namespace, body)


def install(helm: Helm, cluster: SimulatedCluster, release: Release, namespace: str,
            extra_sets: tuple[str, ...] = (), timeout: str = "180s") -> str:
    """`helm upgrade --install --wait`: returns once the release's Deployments are Available."""
    helm.dependency_build(release.chart_dir)
    args = ["upgrade", "--install", release.name, str(release.chart_dir), "--namespace", namespace,
            "-f", str(region_values(cluster.region)), "--wait", "--timeout", timeout]
    for item in extra_sets:
        args += ["--set", item]
    return helm.with_kubeconfig(cluster.kubeconfig).run(*args, timeout=300)


def install_suite(helm: Helm, cluster: SimulatedCluster, namespace: str | None = None) -> list[str]:
    default_namespace, releases = load_release_set()
    namespace = namespace or default_namespace
    ensure_namespace(api_client(cluster.kubeconfig), namespace)
    for release in releases:
        install(helm, cluster, release, namespace)
    return [release.name for release in releases]


def deployment_available(api: client.ApiClient, namespace: str, name: str) -> bool:
    deployment = client.AppsV1Api(api).read_namespaced_deployment(name, namespace)
    conditions = {c.type: c.status for c in (deployment.status.conditions or [])}
    return conditions.get("Available") == "True" and (deployment.status.available_replicas or 0) >= 1


def release_history(helm: Helm, cluster: SimulatedCluster, release: str, namespace: str) -> list[dict[str, Any]]:
    output = helm.with_kubeconfig(cluster.kubeconfig).run("history", release, "--namespace", namespace,
                                                           "--output", "yaml")
    history: list[dict[str, Any]] = yaml.safe_load(output)
    return history
