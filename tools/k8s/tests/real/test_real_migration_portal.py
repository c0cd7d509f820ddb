"""The migration orchestrator and the audit portal as real pods in both regions: `helm upgrade --install --wait
--atomic` of their releases (the release set's values: migration with its Service-selector switch on), every pod
Ready through its real probes on the region's real node, and each chart's `helm test` hook answered through the
Service's DNS name.

They are installed in a namespace of their own: test_real_day2.py makes the migration release's ServiceAccount, Role
and RoleBinding by hand in the package's namespace to judge the switch's RBAC, which a helm release of migration
there would own. Neither service reaches its other dependencies from pods yet (Kafka, Dex for the portal, burn for
migration's SLO gate: tools/k8s/README.md); both are Ready without them. Nothing skips.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from ig_infra.components.postgres import Postgres
from ig_infra.paths import Paths
from ig_k8s.helm import Helm
from ig_k8s.images import build_and_load
from ig_k8s.node import RealNode
from ig_k8s.real_charts import helm_test, install_on_real_node, uninstall
from ig_k8s.suite import REGIONS, in_parallel

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

RELEASES = ("migration", "audit-portal")
NAMESPACE = "ig-real-apps"


@pytest.fixture(scope="module")
def apps(nodes: dict[str, RealNode], images: dict[str, Any], postgres: Postgres, helm: Helm,
         image_tag: str) -> Iterator[dict[str, dict[str, Any]]]:
    build_and_load(list(RELEASES), image_tag, Paths.from_environment())
    jobs = {f"{release}/{region}": (lambda release=release, region=region:
                                   install_on_real_node(nodes[region], release, image_tag, helm, NAMESPACE))
            for region in REGIONS for release in RELEASES}
    try:
        yield in_parallel(jobs)
    finally:
        in_parallel({key: (lambda key=key: uninstall(nodes[key.split("/")[1]], key.split("/")[0], helm, NAMESPACE,
                                                   wait=False))
                     for key in jobs})


@pytest.mark.parametrize("region", REGIONS)
@pytest.mark.parametrize("release", RELEASES)
def test_the_release_runs_on_the_real_node_and_its_helm_test_passes(
        apps: dict[str, dict[str, Any]], nodes: dict[str, RealNode], helm: Helm, release: str, region: str) -> None:
    pods = apps[f"{release}/{region}"]["pods"]
    assert len(pods) >= 1 and all(pod["ready"] for pod in pods), pods
    assert {pod["node"] for pod in pods} == {nodes[region].name}
    result = helm_test(nodes[region], release, helm, NAMESPACE)
    assert "Phase:          Succeeded" in result["helm"], result["helm"]
    assert result["phase"] == "Succeeded" and result["node"] == nodes[region].name
    assert '200 {"status":"ok"}' in result["log"], result["log"]
