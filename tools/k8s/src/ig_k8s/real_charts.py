"""The suite's charts on the real nodes (issue #22 items 3-4): ``helm upgrade --install --wait --atomic`` of a release
whose pods must become Ready through their real probes, on a region whose infrastructure its pods reach (each
region's own PostgreSQL and Kafka: pod_infra.py).
"""

from __future__ import annotations

import json
import time
from typing import Any

from ig_infra.paths import Paths
from ig_infra.pki import DevCA, ca_directory

from ig_k8s.helm import Helm, manifests
from ig_k8s.images import OPA_IMAGE
from ig_k8s.kube import api_client, secret_exists
from ig_k8s.node import REAL_NODE_LABEL, RealNode
from ig_k8s.pod_infra import KAFKA_BOOTSTRAP
from ig_k8s.releases import Release, ensure_namespace, ensure_workload_secret, load_release_set
from ig_k8s.suite import region_values
from ig_k8s.volumes import ensure_volumes

NAMESPACE = "ig-real"


def real_node_values(release: Release, tag: str) -> dict[str, Any]:
    """What a release needs beyond its region's values to run on the real node: the image imported there (never
    pulled), the node's label and taint, and the region's one broker (the region values name two, kafka-0 and
    kafka-1, as a production cluster runs them; a bootstrap name that does not resolve only slows a client)."""
    values: dict[str, Any] = {
        "global": {"kafka": {"bootstrap": KAFKA_BOOTSTRAP}},
        "image": {"repository": f"localhost/{release.image}", "tag": tag, "pullPolicy": "Never"},
        "nodeSelector": {REAL_NODE_LABEL: "real"},
        "tolerations": [{"key": REAL_NODE_LABEL, "operator": "Equal", "value": "real", "effect": "NoSchedule"}]}
    if release.chart == "policy":
        repository, opa_tag = OPA_IMAGE.rsplit(":", 1)
        values["opa"] = {"image": {"repository": repository, "tag": opa_tag, "pullPolicy": "Never"}}
    return values


def install_on_real_node(node: RealNode, release_name: str, tag: str, helm: Helm,
                         namespace: str = NAMESPACE, timeout: str = "300s") -> dict[str, Any]:
    """``helm upgrade --install --wait --atomic`` of one release of the suite onto the region's real node; returns
    its pods as the API and the node see them."""
    _, releases = load_release_set()
    release = next(r for r in releases if r.name == release_name)
    cluster = node.cluster
    ensure_namespace(api_client(cluster.kubeconfig), namespace)
    ensure_workload_secret(helm, cluster, release, namespace, release.sets)
    extra: dict[str, Any] = {}
    if release.chart == "audit-portal":
        extra = portal_values(cluster.paths)
    if release.chart == "policy":
        ensure_decision_log_secret(node, f"{release.name}-decision-log", namespace)
    if release.chart == "evidence":
        from ig_k8s.real_evidence import ensure_ledger_key_secret, evidence_values

        ensure_ledger_key_secret(node, f"{release.name}-ledger-key", namespace)
        extra = evidence_values(cluster.paths)
    ensure_volumes(cluster, manifests(helm.template(release.chart_dir, cluster.region, release.name, namespace,
                                                    release.sets)), namespace)
    values = cluster.dir / f"real-node-{release.name}.yaml"
    values.write_text(json.dumps({**real_node_values(release, tag), **extra}, indent=2))
    args = ["upgrade", "--install", release.name, str(release.chart_dir), "--namespace", namespace,
            "-f", str(region_values(cluster.region)), "-f", str(values), "--wait", "--atomic", "--timeout", timeout]
    for item in release.sets:
        args += ["--set", item]
    started = time.monotonic()
    # helm's own timeout ends first, so that --atomic can roll back before the process is killed.
    helm.with_kubeconfig(cluster.kubeconfig).run(*args, timeout=int(timeout.rstrip("s")) + 120)
    return {"release": release.name, "install_seconds": round(time.monotonic() - started, 1),
            "pods": release_pods(node, release.name, namespace)}


def portal_values(paths: Paths) -> dict[str, Any]:
    """The portal on the real nodes: its region's Dex (pod_infra.py) serves a certificate of the suite's development
    CA, which the pods trust for the issuer only (``oidc.caBundle``). Its public URL is the Service's plain-HTTP name
    (no TLS ingress in front here), where a browser would never send a Secure cookie: IG_COOKIE_SECURE is off."""
    ca = DevCA.load_or_create(ca_directory(paths.cache))
    return {"oidc": {"caBundle": {"pem": ca.cert_pem.decode()}}, "settings": {"IG_COOKIE_SECURE": "false"}}


def portal_public_url(helm: Helm, region: str, namespace: str = NAMESPACE) -> str:
    """IG_PUBLIC_URL of the release set's portal as its chart renders it for the region and namespace: the redirect
    URI its region's Dex must accept is this + /callback."""
    _, releases = load_release_set()
    release = next(r for r in releases if r.chart == "audit-portal")
    rendered = manifests(helm.template(release.chart_dir, region, release.name, namespace, release.sets))
    return next(str(doc["data"]["IG_PUBLIC_URL"]) for doc in rendered
                if doc.get("kind") == "ConfigMap" and "IG_PUBLIC_URL" in (doc.get("data") or {}))


def ensure_decision_log_secret(node: RealNode, name: str, namespace: str) -> None:
    """The policy chart mounts the decision log's pepper and the replay key's public half from a Secret and the pod
    does not start without it (a kwok node never checks): made once here as `ig-policy keygen` makes them; the
    private half is thrown away (nobody replays these test decisions)."""
    import tempfile
    from pathlib import Path

    from ig_policy.protection_keys import write_decision_log_keys
    from kubernetes import client

    core = client.CoreV1Api(api_client(node.cluster.kubeconfig))
    if secret_exists(core, name, namespace):
        return
    with tempfile.TemporaryDirectory() as scratch:
        keys = write_decision_log_keys(Path(scratch) / "keys")
        data = {"pepper": keys["pepper"].read_text(), "input-key.pub": keys["input_key"].read_text()}
    core.create_namespaced_secret(namespace, {"metadata": {"name": name}, "type": "Opaque", "stringData": data})


def release_pods(node: RealNode, release: str, namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    from kubernetes import client

    core = client.CoreV1Api(api_client(node.cluster.kubeconfig))
    # The release's workload pods, not its `helm test` hook pod (kept after it ran, for its log).
    selector = f"app.kubernetes.io/instance={release},app.kubernetes.io/component!=helm-test"
    pods = core.list_namespaced_pod(namespace, label_selector=selector).items
    found = []
    for pod in pods:
        conditions = {c.type: c.status for c in pod.status.conditions or []}
        found.append({"name": pod.metadata.name, "node": pod.spec.node_name, "ip": pod.status.pod_ip,
                      "ready": conditions.get("Ready") == "True", "uid": pod.metadata.uid,
                      "restarts": sum(c.restart_count for c in pod.status.container_statuses or [])})
    return found


def pod_log(node: RealNode, pod: dict[str, Any], container: str, namespace: str = NAMESPACE) -> str:
    directory = node.pod_logs / f"{namespace}_{pod['name']}_{pod['uid']}" / container
    return "".join(path.read_text(errors="replace") for path in sorted(directory.glob("*.log")))


def helm_test(node: RealNode, release: str, helm: Helm, namespace: str = NAMESPACE) -> dict[str, Any]:
    """``helm test``: the chart's hook pod calls the service through its Service's DNS name; returns helm's verdict
    and the hook pod's own output, read from the node."""
    output = helm.with_kubeconfig(node.cluster.kubeconfig).run("test", release, "--namespace", namespace,
                                                             "--timeout", "120s", timeout=300)
    from kubernetes import client

    core = client.CoreV1Api(api_client(node.cluster.kubeconfig))
    hook = core.read_namespaced_pod(f"{release}-test", namespace)
    pod = {"name": hook.metadata.name, "uid": hook.metadata.uid}
    return {"helm": output, "phase": hook.status.phase, "node": hook.spec.node_name,
            "log": pod_log(node, pod, "call", namespace)}


def uninstall(node: RealNode, release: str, helm: Helm, namespace: str = NAMESPACE, wait: bool = True) -> None:
    """``helm uninstall``, and the test hook pod it leaves behind (hooks are not part of the release's objects).
    Without ``wait`` the release's pods are deleted at once (grace 0): for a clean-up when the node may be gone
    already, whose kubelet would never confirm a graceful end."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    args = ["uninstall", release, "--namespace", namespace, "--ignore-not-found", *(["--wait"] if wait else [])]
    helm.with_kubeconfig(node.cluster.kubeconfig).run(*args, timeout=300)
    core = client.CoreV1Api(api_client(node.cluster.kubeconfig))
    if not wait:
        core.delete_collection_namespaced_pod(namespace, label_selector=f"app.kubernetes.io/instance={release}",
                                              grace_period_seconds=0)
    try:
        core.delete_namespaced_pod(f"{release}-test", namespace, grace_period_seconds=0)
    except ApiException as error:
        if error.status != 404:
            raise
