"""Day-2 operations on the real nodes: policy upgraded to a new image tag and rolled back with `helm rollback` while a
pod calls Decide through its Service's DNS name (no call may fail), the migration
orchestrator's Service-selector switch judged by RBAC with real ServiceAccount tokens, and evicted pods replaced
within their disruption budget.

The releases are the package's (conftest.py): every release of the release set, installed once for all its modules.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from ig_infra.paths import Paths
from ig_infra.process import wait_until
from ig_k8s.day2 import client_loop_requests, delete_pod, release_images, retag_image, start_client_loop
from ig_k8s.helm import Helm
from ig_k8s.kube import api_client
from ig_k8s.node import RealNode
from ig_k8s.node_build import NodeBinaries
from ig_k8s.real_charts import NAMESPACE, install_on_real_node, release_pods
from ig_k8s.releases import release_history
from ig_k8s.suite import REGIONS
from kubernetes import client
from kubernetes.client.rest import ApiException

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


@pytest.mark.parametrize("region", REGIONS)
def test_upgrade_to_a_new_tag_and_rollback_fail_no_decide_call_through_the_service(
        installed: dict[str, dict[str, Any]], nodes: dict[str, RealNode], helm: Helm, image_tag: str,
        region: str) -> None:
    """Readiness, maxUnavailable 0 and the pods' graceful end (preStop sleep, for the OPA sidecar too) keep Decide
    answering through the Service, over mTLS, while the Deployment is replaced twice; helm's history records the
    upgrade and the rollback, and the pods run the image each names."""
    node = nodes[region]
    binaries = NodeBinaries.cached(Paths.from_environment())
    image = "localhost/ig/policy"
    next_tag = f"{image_tag}-next"
    retag_image(node, binaries, f"{image}:{image_tag}", f"{image}:{next_tag}")
    before = release_history(helm, node.cluster, "policy", NAMESPACE)[-1]["revision"]
    loop = start_client_loop(node, helm, "policy", image_tag, seconds=300, decide=True)
    core = client.CoreV1Api(api_client(node.cluster.kubeconfig))
    try:
        started = time.time()
        upgraded = install_on_real_node(node, "policy", next_tag, helm)
        assert set(release_images(node, "policy").values()) == {f"{image}:{next_tag}"}
        assert all(pod["ready"] for pod in upgraded["pods"]) and len(upgraded["pods"]) >= 2

        helm.with_kubeconfig(node.cluster.kubeconfig).run(
            "rollback", "policy", str(before), "--namespace", NAMESPACE, "--wait", "--timeout", "300s", timeout=400)
        history = release_history(helm, node.cluster, "policy", NAMESPACE)
        assert [h["revision"] for h in history][-2:] == [before + 1, before + 2]
        assert history[-1]["status"] == "deployed" and history[-1]["description"] == f"Rollback to {before}"
        assert set(release_images(node, "policy").values()) == {f"{image}:{image_tag}"}
        # helm's --wait returns once the new pods are Ready; the old ones may still be in their preStop sleep (not
        # Ready, about to go), which once failed an immediate check. Every pod the release keeps must become Ready.
        wait_until(lambda: all(pod["ready"] for pod in release_pods(node, "policy")), timeout=90,
                   what="every policy pod Ready after the rollback (the old ones gone)")
        ended = time.time()
        time.sleep(1)  # requests after the last old pod ended
        requests = client_loop_requests(node, loop)
    finally:
        delete_pod(core, loop)
    failed = [r for r in requests if not r["ok"]]
    assert not failed, f"{len(failed)} of {len(requests)} requests failed: {failed[:5]}"
    # Every call is answered by the policy (the loop's tenant is unknown to it) or fails closed: never an allow, never
    # an unset result. Fail-closed answers are allowed because this run's OPA sidecars now and then answer a decision
    # with HTTP 500 while serving steadily, not only while ending (their logs; charts/README.md, day-2 "Open").
    answers = Counter((r["result"], r["rule_id"]) for r in requests)
    assert set(answers) <= {("RESULT_DENY", "ig.tenant.unknown"), ("RESULT_DENY", "ig.system.engine_unavailable")}, \
        answers
    assert answers[("RESULT_DENY", "ig.tenant.unknown")] > 0, answers
    during = [r for r in requests if started <= r["at"] <= ended]
    assert len(during) >= 100, (len(during), ended - started)  # the loop ran through both rollouts


def _service_account_kubeconfig(node: RealNode, account: str, target: Path) -> Path:
    """A kubeconfig carrying a real token of the ServiceAccount (TokenRequest API), so RBAC judges that account."""
    core = client.CoreV1Api(api_client(node.cluster.kubeconfig))
    token = core.create_namespaced_service_account_token(
        account, NAMESPACE, {"spec": {"expirationSeconds": 600}}).status.token
    config = json.loads(node.cluster.kubeconfig.read_text())
    config["users"] = [{"name": account, "user": {"token": token}}]
    config["contexts"][0]["context"]["user"] = account
    target.write_text(json.dumps(config))
    return target


def _use_kubeconfig(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    # The client reads $KUBECONFIG once, at import, into this module-level default.
    from kubernetes.config import kube_config

    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))


def _wait_until_rbac_sees(node: RealNode, account: str, timeout: float = 15) -> bool:
    """The API server's RBAC authorizer learns of a new binding through a watch: ask it, as it will judge the
    switch, until the binding counts (False when it never does: the switch is then refused, as it should be)."""
    review = {"spec": {"user": f"system:serviceaccount:{NAMESPACE}:{account}",
                       "groups": ["system:serviceaccounts", f"system:serviceaccounts:{NAMESPACE}"],
                       "resourceAttributes": {"namespace": NAMESPACE, "verb": "patch", "resource": "services"}}}
    authorization = client.AuthorizationV1Api(api_client(node.cluster.kubeconfig))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if authorization.create_subject_access_review(review).status.allowed:
            return True
        time.sleep(0.2)
    return False


def test_only_the_migration_service_account_can_switch_a_service_selector(
        installed: dict[str, dict[str, Any]], nodes: dict[str, RealNode], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from ig_migration.adapters.kubernetes_switch import switch_selector
    from ig_migration.domain.plan import KubernetesSwitch

    node = nodes["region-a"]
    core = client.CoreV1Api(api_client(node.cluster.kubeconfig))
    # The identity of the migration release's running pods (ServiceAccount, Role, RoleBinding as its chart renders
    # them with the release set's values, the switch on), and another workload's: the account burn's pods use.
    migration, other = (core.read_namespaced_pod(release_pods(node, release)[0]["name"], NAMESPACE)
                        .spec.service_account_name for release in ("migration", "burn"))
    assert migration and other and other != migration
    _wait_until_rbac_sees(node, migration)
    delete_service(core, "checkout")
    core.create_namespaced_service(NAMESPACE, {
        "metadata": {"name": "checkout"},
        "spec": {"selector": {"app": "checkout", "version": "blue"}, "ports": [{"port": 8080}]}})
    switch = KubernetesSwitch(enabled=True, namespace=NAMESPACE, service="checkout", selector_key="version")
    try:
        _use_kubeconfig(monkeypatch, _service_account_kubeconfig(node, other, tmp_path / "other"))
        with pytest.raises(ApiException) as forbidden:
            asyncio.run(switch_selector(switch, "green"))
        assert forbidden.value.status == 403

        _use_kubeconfig(monkeypatch, _service_account_kubeconfig(node, migration, tmp_path / "migration"))
        assert asyncio.run(switch_selector(switch, "green")) == "blue"
        assert core.read_namespaced_service("checkout", NAMESPACE).spec.selector == {"app": "checkout",
                                                                                     "version": "green"}
    finally:
        delete_service(core, "checkout")


def delete_service(core: client.CoreV1Api, name: str) -> None:
    try:
        core.delete_namespaced_service(name, NAMESPACE)
    except ApiException as error:
        if error.status != 404:
            raise


@pytest.mark.parametrize("region", REGIONS)
def test_evicted_pods_are_replaced_and_rejoin_while_the_budget_keeps_one_serving(
        installed: dict[str, dict[str, Any]], nodes: dict[str, RealNode], region: str) -> None:
    """The Eviction API (what `kubectl drain` uses) takes all policy pods but one and the PodDisruptionBudget
    (minAvailable 1) refuses the last; the Deployment replaces the evicted pods on the real node, each new pod becomes
    Ready through its probes and its address is a ready endpoint of the Service again (what kube-proxy routes to)."""
    node = nodes[region]
    api = api_client(node.cluster.kubeconfig)
    core, discovery = client.CoreV1Api(api), client.DiscoveryV1Api(api)
    pods = release_pods(node, "policy")
    assert len(pods) >= 2 and all(pod["ready"] for pod in pods), pods
    _wait_for_budget(client.PolicyV1Api(api), "policy", healthy=len(pods))
    for pod in pods[:-1]:
        core.create_namespaced_pod_eviction(pod["name"], NAMESPACE, _eviction(pod["name"]))
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod_eviction(pods[-1]["name"], NAMESPACE, _eviction(pods[-1]["name"]))
    assert refused.value.status == 429 and "disruption budget" in refused.value.body

    evicted = {pod["name"] for pod in pods[:-1]}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        current = release_pods(node, "policy")
        fresh = [p for p in current if p["name"] not in {p["name"] for p in pods} and p["ready"]]
        slices = discovery.list_namespaced_endpoint_slice(NAMESPACE,
                                                          label_selector="kubernetes.io/service-name=policy").items
        ready = {address for s in slices for e in s.endpoints or [] if e.conditions.ready for address in e.addresses}
        if len(fresh) == len(evicted) and {p["ip"] for p in fresh} <= ready \
                and not evicted & {p["name"] for p in current}:
            break
        time.sleep(1)
    else:
        raise AssertionError(f"the evicted {evicted} were not replaced in the Service within 120 s: {current}, {ready}")
    assert {p["node"] for p in fresh} == {node.name}


def _eviction(name: str) -> client.V1Eviction:
    return client.V1Eviction(metadata=client.V1ObjectMeta(name=name, namespace=NAMESPACE))


def _wait_for_budget(policy: client.PolicyV1Api, name: str, healthy: int) -> None:
    """The disruption controller counts the pods asynchronously (another test may just have replaced them)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = policy.read_namespaced_pod_disruption_budget(name, NAMESPACE).status
        if status.current_healthy == healthy and status.disruptions_allowed == healthy - 1:
            return
        time.sleep(0.5)
    raise AssertionError(f"PodDisruptionBudget {name} did not count {healthy} healthy pods: {status}")
