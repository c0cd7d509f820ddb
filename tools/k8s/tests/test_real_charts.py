"""The suite's charts on the real nodes: `helm upgrade --install --wait --atomic` of the burn and policy releases
in both regions, every pod Ready through its real probes on the region's real node, each service connected to
PostgreSQL through the Service name the region's values give (`postgresql.ig-data.svc.cluster.local`,
`sslmode=verify-full`, its workload certificate mapped to its own roles), the policy service to its OPA sidecar
(built here from the static OPA the suite already builds) with the repository's policies loaded.

PostgreSQL here is the real nodes' own (tools/k8s/src/ig_k8s/real_charts.py): the shared one listens on loopback
only. Kafka is not reachable from pods yet (its brokers advertise loopback addresses), so the services' outbox
relays retry in the background; burn and policy are Ready without it. Nothing skips: a build, node or install
that fails fails the tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from ig_infra.components.postgres import Postgres
from ig_infra.paths import Paths
from ig_k8s.cluster import SimulatedCluster
from ig_k8s.helm import Helm
from ig_k8s.images import build_and_load
from ig_k8s.node import RealNode
from ig_k8s.node_build import NodeBinaries
from ig_k8s.real_charts import (
    NAMESPACE,
    helm_test,
    install_on_real_node,
    pod_log,
    start_pod_infrastructure,
    stop_pod_infrastructure,
    uninstall,
)
from ig_k8s.suite import REGIONS

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

TAG = "node-test"
RELEASES = ("burn", "policy")


@pytest.fixture(scope="module")
def nodes() -> Iterator[dict[str, RealNode]]:
    paths = Paths.from_environment()
    binaries = NodeBinaries.ensure(paths)
    started: list[SimulatedCluster] = []
    found: dict[str, RealNode] = {}
    try:
        for region in REGIONS:
            cluster = SimulatedCluster(region, paths)
            if not cluster.healthy():
                cluster.start()
                started.append(cluster)
            found[region] = RealNode(region, paths)
            found[region].start(binaries)
        yield found
    finally:
        for node in found.values():
            node.stop(binaries)
        for cluster in started:  # leave clusters that `make k8s-up` started running
            cluster.stop()


@pytest.fixture(scope="module")
def postgres(nodes: dict[str, RealNode]) -> Iterator[Postgres]:
    paths = Paths.from_environment()
    try:
        yield start_pod_infrastructure(paths, list(nodes.values()))
    finally:
        stop_pod_infrastructure(paths)


@pytest.fixture(scope="module")
def installed(nodes: dict[str, RealNode], postgres: Postgres, helm: Helm) -> Iterator[dict[str, dict[str, Any]]]:
    build_and_load(list(RELEASES), TAG, Paths.from_environment())
    found = {f"{release}/{region}": install_on_real_node(nodes[region], release, TAG, helm)
             for region in REGIONS for release in RELEASES}
    yield found
    for region in REGIONS:
        for release in RELEASES:
            uninstall(nodes[region], release, helm)


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
        installed: dict[str, dict[str, Any]], nodes: dict[str, RealNode], postgres: Postgres, release: str,
        region: str) -> None:
    node = nodes[region]
    logs = [pod_log(node, pod, release) for pod in installed[f"{release}/{region}"]["pods"]]
    assert all('"event": "service_started"' in log for log in logs)
    # PostgreSQL's side: the service's sessions come from the node's uplink (kube-proxy's masquerade of Service
    # traffic), logged in as the runtime role its certificate maps to.
    sessions = postgres.admin_sql("SELECT DISTINCT usename || ' ' || host(client_addr) FROM pg_stat_activity "
                                  f"WHERE usename LIKE 'ig_{release}%'", database="ig")
    assert f"ig_{release} {node.network.uplink_address}" in sessions.splitlines(), sessions


@pytest.mark.parametrize("region", REGIONS)
def test_policy_loads_the_repository_policies_into_its_opa_sidecar(
        installed: dict[str, dict[str, Any]], nodes: dict[str, RealNode], region: str) -> None:
    """OPA reads the policy ConfigMaps as mounted by the kubelet (each file also under "..<date>" and "..data"):
    without `--ignore=..*` it loads every rule thrice and exits ("multiple default rules"), seen on these nodes."""
    for pod in installed[f"policy/{region}"]["pods"]:
        loaded = [line for line in pod_log(nodes[region], pod, "policy").splitlines()
                  if '"event": "policy_revision_loaded"' in line]
        assert loaded and '"modules": 0,' not in loaded[-1]
        assert "initialization error" not in pod_log(nodes[region], pod, "opa")


@pytest.mark.parametrize("region", REGIONS)
@pytest.mark.parametrize(("release", "answer"), [("burn", '200 {"flags"'), ("policy", '200 {"status":"ok"}')])
def test_helm_test_calls_each_service_through_its_service_dns_name(
        installed: dict[str, dict[str, Any]], nodes: dict[str, RealNode], helm: Helm, release: str, answer: str,
        region: str) -> None:
    result = helm_test(nodes[region], release, helm)
    assert "Phase:          Succeeded" in result["helm"], result["helm"]
    assert result["phase"] == "Succeeded" and result["node"] == nodes[region].name
    assert answer in result["log"], result["log"]


def test_the_release_namespace_enforces_the_restricted_pod_security_standard(
        installed: dict[str, dict[str, Any]], nodes: dict[str, RealNode]) -> None:
    from ig_k8s.kube import api_client
    from kubernetes import client

    core = client.CoreV1Api(api_client(nodes[REGIONS[0]].cluster.kubeconfig))
    labels = core.read_namespace(NAMESPACE).metadata.labels
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
