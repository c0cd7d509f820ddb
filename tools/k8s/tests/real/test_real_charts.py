"""The suite's charts on the real nodes: `helm upgrade --install --wait --atomic` of the burn, policy and evidence
releases in both regions, every pod Ready through its real probes on the region's real node, each service connected to
PostgreSQL through the Service name the region's values give (`postgresql.ig-data.svc.cluster.local`,
`sslmode=verify-full`, its workload certificate mapped to its own roles), the policy service to its OPA sidecar
(built here from the static OPA the suite already builds) with the repository's policies loaded.

PostgreSQL and Kafka here are each region's own for its pods (tools/k8s/src/ig_k8s/pod_infra.py; what reaches which:
test_real_pod_infra.py). Nothing skips: a build, node or install that fails fails the tests.
"""

from __future__ import annotations

from typing import Any

import pytest
from ig_k8s.helm import Helm
from ig_k8s.node import RealNode
from ig_k8s.pod_infra import RegionInfra
from ig_k8s.real_charts import NAMESPACE, helm_test, pod_log, release_pods
from ig_k8s.suite import REGIONS

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

RELEASES = ("burn", "policy", "evidence")  # installed by the package's `installed` fixture (conftest.py)


@pytest.mark.parametrize("region", REGIONS)
@pytest.mark.parametrize("release", RELEASES)
def test_a_release_installs_with_wait_and_atomic_and_every_pod_is_ready_on_the_real_node(
        installed: dict[str, dict[str, Any]], nodes: dict[str, RealNode], release: str, region: str) -> None:
    pods = installed[f"{release}/{region}"]["pods"]
    assert len(pods) >= 2  # the autoscaler's minReplicas
    assert all(pod["ready"] for pod in pods), pods
    assert {pod["node"] for pod in pods} == {nodes[region].name}
    subnet = nodes[region].network.subnet.rsplit(".", 1)[0] + "."
    assert all(pod["ip"].startswith(subnet) for pod in pods)


@pytest.mark.parametrize("region", REGIONS)
@pytest.mark.parametrize("release", RELEASES)
def test_a_release_reached_postgresql_through_its_service_name_as_its_own_roles(
        installed: dict[str, dict[str, Any]], nodes: dict[str, RealNode], infra: dict[str, RegionInfra],
        release: str, region: str) -> None:
    node = nodes[region]
    logs = [pod_log(node, pod, release) for pod in release_pods(node, release)]
    assert all('"event": "service_started"' in log for log in logs)
    # PostgreSQL's side: the service's sessions come from the node's uplink (kube-proxy's masquerade of Service
    # traffic), logged in as the runtime role its certificate maps to.
    sessions = infra[region].postgres.admin_sql(
        "SELECT DISTINCT usename || ' ' || host(client_addr) FROM pg_stat_activity "
        f"WHERE usename LIKE 'ig_{release}%'", database="ig")
    assert f"ig_{release} {node.network.uplink_address}" in sessions.splitlines(), sessions


@pytest.mark.parametrize("region", REGIONS)
def test_policy_loads_the_repository_policies_into_its_opa_sidecar(
        installed: dict[str, dict[str, Any]], nodes: dict[str, RealNode], region: str) -> None:
    """OPA reads the policy ConfigMaps as mounted by the kubelet (each file also under "..<date>" and "..data"):
    without `--ignore=..*` it loads every rule thrice and exits ("multiple default rules"), seen on these nodes."""
    for pod in release_pods(nodes[region], "policy"):  # today's pods: another module may have replaced them
        loaded = [line for line in pod_log(nodes[region], pod, "policy").splitlines()
                  if '"event": "policy_revision_loaded"' in line]
        assert loaded and '"modules": 0,' not in loaded[-1]
        assert "initialization error" not in pod_log(nodes[region], pod, "opa")


@pytest.mark.parametrize("region", REGIONS)
@pytest.mark.parametrize(("release", "answer"), [
    ("burn", '200 {"flags"'),
    # gRPC over mTLS as the identity helm-test: a decision by the sidecar's policies, an empty list from the database
    ("policy", '"result": "RESULT_DENY", "ruleId": "ig.tenant.unknown"'),
    ("evidence", "OK [{}]"),
])
def test_helm_test_calls_each_service_through_its_service_dns_name(
        installed: dict[str, dict[str, Any]], nodes: dict[str, RealNode], helm: Helm, release: str, answer: str,
        region: str) -> None:
    result = helm_test(nodes[region], release, helm)
    assert "Phase:          Succeeded" in result["helm"], result["helm"]
    assert result["phase"] == "Succeeded" and result["node"] == nodes[region].name
    assert answer in result["log"], result["log"]


def test_the_release_namespace_enforces_the_restricted_pod_security_standard(
        installed: dict[str, dict[str, Any]], nodes: dict[str, RealNode], image_tag: str) -> None:
    """The charts' pods run there, so they comply; a pod the baseline level allows (no runAsNonRoot, escalation
    allowed, capabilities kept) is refused by the API server itself."""
    from ig_k8s.kube import api_client
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    core = client.CoreV1Api(api_client(nodes[REGIONS[0]].cluster.kubeconfig))
    labels = core.read_namespace(NAMESPACE).metadata.labels
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    unrestricted = {"metadata": {"name": "unrestricted-probe"},
                    "spec": {"containers": [{"name": "x", "image": f"localhost/ig/burn:{image_tag}"}]}}
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod(NAMESPACE, unrestricted)
    assert refused.value.status == 403 and "violates PodSecurity" in refused.value.body


@pytest.mark.parametrize("region", REGIONS)
@pytest.mark.parametrize("release", RELEASES)
def test_each_region_runs_its_release_with_its_own_region_setting(
        installed: dict[str, dict[str, Any]], nodes: dict[str, RealNode], release: str, region: str) -> None:
    from ig_k8s.kube import api_client
    from kubernetes import client

    core = client.CoreV1Api(api_client(nodes[region].cluster.kubeconfig))
    assert core.read_namespaced_config_map(f"{release}-settings", NAMESPACE).data["IG_REGION"] == region
