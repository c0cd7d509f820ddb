"""The charts on real API servers: two simulated clusters (kube-apiserver + etcd + controller-manager + scheduler,
kwok nodes labelled with their region). Every release is installed in both regions into a namespace that enforces
the restricted Pod Security Standard, Deployments must become Available, one release is upgraded and rolled back,
and the migration orchestrator's Service-selector switch runs with its own ServiceAccount's token.

Never skipped: when the binaries could not be built (`make test` builds them first, `make k8s-binaries`, and stops
there if that fails) the tests fail, quoting the reason `ig-k8s build --allow-failure` recorded, if any.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from ig_infra.paths import Paths
from ig_k8s.cluster import BUILD_FAILURE_FILE, REGION_LABEL, Binaries, SimulatedCluster
from ig_k8s.helm import Helm
from ig_k8s.kube import api_client
from ig_k8s.releases import (
    deployment_available,
    ensure_namespace,
    install,
    load_release_set,
    release_history,
)
from ig_k8s.suite import REGIONS
from kubernetes import client
from kubernetes.client.rest import ApiException

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

_, RELEASES = load_release_set()
NAMESPACE = f"ig-test-{secrets.token_hex(3)}"


@pytest.fixture(scope="module")
def clusters() -> Iterator[dict[str, SimulatedCluster]]:
    paths = Paths.from_environment()
    binaries = Binaries.cached(paths)
    if binaries is None:
        failure = paths.component_dir("k8s") / BUILD_FAILURE_FILE
        reason = failure.read_text()[-1500:] if failure.exists() else "not built yet: run `uv run ig-k8s build`"
        pytest.fail(f"Kubernetes binaries could not be built: {reason}")
    started: list[SimulatedCluster] = []
    found: dict[str, SimulatedCluster] = {}
    for region in REGIONS:
        cluster = SimulatedCluster(region, paths)
        if not cluster.healthy():
            started.append(cluster)
        cluster.start(binaries)
        found[region] = cluster
    yield found
    for cluster in found.values():
        client.CoreV1Api(api_client(cluster.kubeconfig)).delete_namespace(NAMESPACE)
    for cluster in started:  # leave clusters that `make k8s-up` started running
        cluster.stop()


@pytest.fixture(scope="module")
def installed(clusters: dict[str, SimulatedCluster]) -> dict[str, SimulatedCluster]:
    helm = Helm.create()

    def install_region(cluster: SimulatedCluster) -> None:
        ensure_namespace(api_client(cluster.kubeconfig), NAMESPACE)
        for release in RELEASES:
            install(helm, cluster, release, NAMESPACE)

    with ThreadPoolExecutor(max_workers=len(clusters)) as pool:
        for future in [pool.submit(install_region, cluster) for cluster in clusters.values()]:
            future.result()
    return clusters


@pytest.mark.parametrize("region", REGIONS)
def test_every_release_is_available_on_the_region_nodes(installed: dict[str, SimulatedCluster], region: str) -> None:
    cluster = installed[region]
    api = api_client(cluster.kubeconfig)
    for release in RELEASES:
        assert deployment_available(api, NAMESPACE, release.name), f"{region}: {release.name} not Available"
    core = client.CoreV1Api(api)
    nodes = {n.metadata.name: n.metadata.labels for n in core.list_node().items}
    # The charts leave replicas to the HPA; the controller-manager scales each Deployment up to minReplicas 2.
    deadline = time.monotonic() + 60
    while len(running := [p for p in core.list_namespaced_pod(NAMESPACE).items if p.status.phase == "Running"]) \
            < 2 * len(RELEASES) and time.monotonic() < deadline:
        time.sleep(1)
    assert len(running) >= 2 * len(RELEASES)
    for pod in running:
        assert nodes[pod.spec.node_name][REGION_LABEL] == region, pod.metadata.name
    settings = core.read_namespaced_config_map("policy-settings", NAMESPACE).data
    assert settings["IG_REGION"] == region and settings["IG_OPA_URL"] == "http://127.0.0.1:8181"


def test_restricted_pod_security_is_enforced_by_the_api_server(installed: dict[str, SimulatedCluster]) -> None:
    core = client.CoreV1Api(api_client(installed["region-a"].kubeconfig))
    # Allowed by the baseline level, refused by restricted: no runAsNonRoot, escalation allowed, capabilities kept.
    unrestricted = {"metadata": {"name": "unrestricted-probe"},
                    "spec": {"containers": [{"name": "x", "image": "ig/evidence:1.2.1"}]}}
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod(NAMESPACE, unrestricted)
    assert refused.value.status == 403 and "violates PodSecurity" in refused.value.body


def test_upgrade_then_rollback_restores_the_release(installed: dict[str, SimulatedCluster]) -> None:
    cluster = installed["region-b"]
    helm = Helm.create().with_kubeconfig(cluster.kubeconfig)
    api = api_client(cluster.kubeconfig)
    core = client.CoreV1Api(api)
    evidence = next(r for r in RELEASES if r.name == "evidence")
    before = release_history(helm, cluster, "evidence", NAMESPACE)[-1]["revision"]

    install(helm, cluster, evidence, NAMESPACE, extra_sets=("logLevel=DEBUG",))
    assert core.read_namespaced_config_map("evidence-settings", NAMESPACE).data["IG_LOG_LEVEL"] == "DEBUG"
    assert deployment_available(api, NAMESPACE, "evidence")

    helm.run("rollback", "evidence", str(before), "--namespace", NAMESPACE, "--wait", "--timeout", "180s")
    history = release_history(helm, cluster, "evidence", NAMESPACE)
    assert [h["revision"] for h in history][-2:] == [before + 1, before + 2]
    assert history[-1]["status"] == "deployed" and history[-1]["description"] == f"Rollback to {before}"
    assert core.read_namespaced_config_map("evidence-settings", NAMESPACE).data["IG_LOG_LEVEL"] == "INFO"
    assert deployment_available(api, NAMESPACE, "evidence")


def _service_account_kubeconfig(cluster: SimulatedCluster, account: str, target: Path) -> Path:
    """A kubeconfig carrying a real token of the ServiceAccount (TokenRequest API), so RBAC judges that account."""
    core = client.CoreV1Api(api_client(cluster.kubeconfig))
    token = core.create_namespaced_service_account_token(
        account, NAMESPACE, {"spec": {"expirationSeconds": 600}}).status.token
    config = json.loads(cluster.kubeconfig.read_text())
    config["users"] = [{"name": account, "user": {"token": token}}]
    config["contexts"][0]["context"]["user"] = account
    target.write_text(json.dumps(config))
    return target


def use_kubeconfig(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    # The client reads $KUBECONFIG once, at import, into this module-level default.
    from kubernetes.config import kube_config

    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))


def test_only_the_migration_service_account_can_switch_a_service_selector(
        installed: dict[str, SimulatedCluster], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ig_migration.adapters.kubernetes_switch import switch_selector
    from ig_migration.domain.plan import KubernetesSwitch

    cluster = installed["region-a"]
    core = client.CoreV1Api(api_client(cluster.kubeconfig))
    core.create_namespaced_service(NAMESPACE, {
        "metadata": {"name": "checkout"},
        "spec": {"selector": {"app": "checkout", "version": "blue"}, "ports": [{"port": 8080}]}})
    switch = KubernetesSwitch(enabled=True, namespace=NAMESPACE, service="checkout", selector_key="version")

    use_kubeconfig(monkeypatch, _service_account_kubeconfig(cluster, "evidence", tmp_path / "evidence"))
    with pytest.raises(ApiException) as forbidden:
        asyncio.run(switch_selector(switch, "green"))
    assert forbidden.value.status == 403

    use_kubeconfig(monkeypatch, _service_account_kubeconfig(cluster, "migration", tmp_path / "migration"))
    assert asyncio.run(switch_selector(switch, "green")) == "blue"
    assert core.read_namespaced_service("checkout", NAMESPACE).spec.selector == {"app": "checkout",
                                                                                 "version": "green"}
