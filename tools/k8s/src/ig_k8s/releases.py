"""The release set (charts/releases.yaml): install, upgrade and roll back the suite in a simulated cluster."""

from __future__ import annotations

import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from ig_infra.pki import DevCA, ca_directory
from kubernetes import client
from kubernetes.client.rest import ApiException

from ig_k8s.cluster import SimulatedCluster
from ig_k8s.helm import Helm, manifests
from ig_k8s.kube import api_client
from ig_k8s.suite import CHARTS_DIR, region_values
from ig_k8s.volumes import ensure_volumes

RELEASES_FILE = CHARTS_DIR / "releases.yaml"


@dataclass(frozen=True)
class Release:
    name: str
    chart: str
    image: str
    # `--set` values this release of the suite needs beyond the region's values (e.g. the migration's switch).
    sets: tuple[str, ...] = ()

    @property
    def chart_dir(self) -> Path:
        return CHARTS_DIR / self.chart


def load_release_set(path: Path = RELEASES_FILE) -> tuple[str, list[Release]]:
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    return document["namespace"], [Release(**{**item, "sets": tuple(item.get("sets", ()))})
                                   for item in document["releases"]]


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


# A `helm test` hook pod that calls as an identity of its own names it here (charts/ig-lib/templates/_test.tpl).
HOOK_IDENTITY_ANNOTATION = "ig.maestro/identity"


@dataclass(frozen=True)
class WorkloadSecret:
    """The certificate Secret a rendered release mounts, and whom it must name: what cert-manager's Certificate
    (charts/README.md) writes in a real cluster."""

    secret_name: str
    service_account: str
    service: str
    namespace: str

    @classmethod
    def of(cls, objects: list[dict[str, Any]], namespace: str) -> WorkloadSecret:
        deployment = next(o for o in objects if o["kind"] == "Deployment")
        pod = deployment["spec"]["template"]["spec"]
        secret = next(v["secret"]["secretName"] for v in pod["volumes"] if v["name"] == "tls")
        service = next(o["metadata"]["name"] for o in objects if o["kind"] == "Service")
        return cls(secret, pod["serviceAccountName"], service, namespace)

    @classmethod
    def hooks_of(cls, objects: list[dict[str, Any]], namespace: str) -> list[WorkloadSecret]:
        """The Secrets of the release's `helm test` hooks that call as an identity of their own (a gRPC hook: the
        pod's ``ig.maestro/identity`` annotation): client certificates, no Service name."""
        found = []
        for pod in (o for o in objects if o["kind"] == "Pod"):
            identity = (pod["metadata"].get("annotations") or {}).get(HOOK_IDENTITY_ANNOTATION)
            secrets = [v["secret"]["secretName"] for v in pod["spec"].get("volumes", []) if v["name"] == "tls"]
            if identity and secrets:
                found.append(cls(secrets[0], identity, "", namespace))
        return found

    @property
    def dns_names(self) -> tuple[str, ...]:
        if not self.service:
            return ()
        qualified = f"{self.service}.{self.namespace}"
        return self.service, qualified, f"{qualified}.svc", f"{qualified}.svc.cluster.local"

    def body(self, ca: DevCA) -> dict[str, Any]:
        """A kubernetes.io/tls Secret (plus ca.crt) with a fresh 24 h certificate for the namespace's SPIFFE ID."""
        with tempfile.TemporaryDirectory() as scratch:
            issued = ca.issue(self.service_account, Path(scratch), namespace=self.namespace,
                              dns_names=self.dns_names, ip_addresses=())
            data = {"tls.crt": issued.cert.read_text(), "tls.key": issued.key.read_text(),
                    "ca.crt": issued.ca.read_text()}
        return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                "metadata": {"name": self.secret_name, "namespace": self.namespace,
                             "labels": {"app.kubernetes.io/part-of": "maestro-conductor",
                                        "ig.maestro/issued-by": "dev-ca"}},
                "stringData": data}


# The cluster tests install both regions in parallel: one thread creates the development CA, never two.
_CA_LOCK = threading.Lock()


def ensure_workload_secret(helm: Helm, cluster: SimulatedCluster, release: Release, namespace: str,
                           extra_sets: tuple[str, ...] = ()) -> WorkloadSecret | None:
    """The simulated clusters run no cert-manager: issue the release's certificate from the development CA into
    the Secret its chart mounts (replaced on every install, so it never expires under a long-lived cluster).
    Nothing to do when the chart renders its own cert-manager Certificate."""
    objects = manifests(helm.template(release.chart_dir, cluster.region, release.name, namespace, extra_sets))
    if any(o["kind"] == "Certificate" for o in objects):
        return None
    wanted = WorkloadSecret.of(objects, namespace)
    with _CA_LOCK:
        ca = DevCA.load_or_create(ca_directory(cluster.paths.cache))
    core = client.CoreV1Api(api_client(cluster.kubeconfig))
    for secret in (wanted, *WorkloadSecret.hooks_of(objects, namespace)):
        put_secret(core, namespace, secret.secret_name, secret.body(ca))
    return wanted


def put_secret(core: client.CoreV1Api, namespace: str, name: str, body: dict[str, Any]) -> None:
    """Create the Secret, or replace the one a previous install left (a fresh certificate every time)."""
    try:
        core.create_namespaced_secret(namespace, body)
    except ApiException as error:
        if error.status != 409:
            raise
        core.replace_namespaced_secret(name, namespace, body)


def install(helm: Helm, cluster: SimulatedCluster, release: Release, namespace: str,
            extra_sets: tuple[str, ...] = (), timeout: str = "180s") -> str:
    """`helm upgrade --install --wait`: returns once the release's Deployments are Available."""
    extra_sets = (*release.sets, *extra_sets)
    ensure_workload_secret(helm, cluster, release, namespace, extra_sets)
    ensure_volumes(cluster, manifests(helm.template(release.chart_dir, cluster.region, release.name, namespace,
                                                   extra_sets)), namespace)
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


def release_history(helm: Helm, cluster: SimulatedCluster, release: str, namespace: str) -> list[dict[str, Any]]:
    output = helm.with_kubeconfig(cluster.kubeconfig).run("history", release, "--namespace", namespace,
                                                           "--output", "yaml")
    history: list[dict[str, Any]] = yaml.safe_load(output)
    return history
