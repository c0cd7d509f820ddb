"""The suite as `make k8s-up` brings it up: ``RealSuite.up`` (the entry point ``ig-k8s up`` runs, and this package's
set-up, conftest.py) leaves every release of the release set with its pods Ready on the real node in both regions;
and the migration orchestrator and the audit portal, installed by it beside burn, policy and evidence (migration
with its Service-selector switch on, as the release set says), answer their `helm test` hooks through their Services'
DNS names.

Neither migration nor the portal reaches its other dependencies from pods yet (Kafka, Dex for the portal, burn for
migration's SLO gate: tools/k8s/README.md); both are Ready without them. Nothing skips.
"""

from __future__ import annotations

from typing import Any

import pytest
from ig_k8s.helm import Helm
from ig_k8s.node import RealNode
from ig_k8s.real_charts import NAMESPACE, helm_test
from ig_k8s.real_suite import RealSuite
from ig_k8s.releases import load_release_set
from ig_k8s.suite import REGIONS

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]


def test_the_make_k8s_up_install_leaves_every_release_ready_on_the_real_node_in_both_regions(
        suite: RealSuite, nodes: dict[str, RealNode]) -> None:
    """The pods as the install saw them once helm's --wait returned (later tests replace some of them)."""
    wanted = {f"{release.name}/{region}" for release in load_release_set()[1] for region in REGIONS}
    assert len(wanted) == 10
    assert set(suite.installed) == wanted
    for key, result in suite.installed.items():
        region = key.split("/")[1]
        pods = result["pods"]
        assert len(pods) >= 1 and all(pod["ready"] for pod in pods), (key, pods)
        assert {pod["node"] for pod in pods} == {nodes[region].name}, key
    for region in REGIONS:
        assert 0 < suite.seconds[f"{region}_all_pods_ready"] <= suite.seconds["total"]


@pytest.mark.parametrize("region", REGIONS)
@pytest.mark.parametrize(("release", "answer"), [
    # MigrationService/Status over mTLS as helm-test: the service looked for the change in its database
    ("migration", "NOT_FOUND change helm-test-probe was never submitted"),
    ("audit-portal", '200 {"status":"ok"}'),
])
def test_the_release_runs_on_the_real_node_and_its_helm_test_passes(
        installed: dict[str, dict[str, Any]], nodes: dict[str, RealNode], helm: Helm, release: str, answer: str,
        region: str) -> None:
    pods = installed[f"{release}/{region}"]["pods"]
    assert len(pods) >= 1 and all(pod["ready"] for pod in pods), pods
    assert {pod["node"] for pod in pods} == {nodes[region].name}
    result = helm_test(nodes[region], release, helm, NAMESPACE)
    assert "Phase:          Succeeded" in result["helm"], result["helm"]
    assert result["phase"] == "Succeeded" and result["node"] == nodes[region].name
    assert answer in result["log"], result["log"]
