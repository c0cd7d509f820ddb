"""The real nodes of both regions, started once for every test of this package (package scope: torn down after the
package's last test, not at the end of a `make test` session), with the burn, policy and evidence images imported and
the three releases installed on demand.

Nothing skips: a binary or image that cannot be built, or a node or install that fails, fails the tests.
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
from ig_k8s.real_charts import install_on_real_node, start_pod_infrastructure, stop_pod_infrastructure, uninstall
from ig_k8s.suite import REGIONS, in_parallel

TAG = "node-test"
RELEASES = ("burn", "policy", "evidence")
# The test that stops the nodes: it runs after every other test that uses them (see the hook below).
STOPS_THE_NODES = "stops_real_nodes"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{STOPS_THE_NODES}: stops the package's real nodes; runs after their users")


@pytest.hookimpl(trylast=True)  # after pytest-randomly's shuffle
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    stoppers = [item for item in items if item.get_closest_marker(STOPS_THE_NODES)]
    for item in stoppers:
        items.remove(item)
    users = [index for index, item in enumerate(items) if "nodes" in getattr(item, "fixturenames", ())]
    at = users[-1] + 1 if users else len(items)
    items[at:at] = stoppers


@pytest.fixture(scope="package")
def nodes() -> Iterator[dict[str, RealNode]]:
    paths = Paths.from_environment()
    binaries = NodeBinaries.ensure(paths)
    started: list[SimulatedCluster] = []
    found: dict[str, RealNode] = {}

    def start(region: str) -> RealNode:
        cluster = SimulatedCluster(region, paths)
        if not cluster.healthy():
            started.append(cluster)
            cluster.start()
        node = found[region] = RealNode(region, paths)
        node.start(binaries)
        return node

    try:
        yield in_parallel({region: (lambda region=region: start(region)) for region in REGIONS})
    finally:
        for node in found.values():  # the node-down test stops them first; this is for a run that failed before it
            node.stop(binaries)
        for cluster in started:  # leave clusters that `make k8s-up` started running
            cluster.stop()


@pytest.fixture(scope="package")
def image_tag() -> str:
    return TAG


@pytest.fixture(scope="package")
def images(nodes: dict[str, RealNode]) -> dict[str, Any]:
    """Built once (buildah's layer cache keeps a warm build short) and imported into both nodes."""
    return build_and_load(list(RELEASES), TAG, Paths.from_environment())


@pytest.fixture(scope="package")
def postgres(nodes: dict[str, RealNode]) -> Iterator[Postgres]:
    paths = Paths.from_environment()
    try:
        yield start_pod_infrastructure(paths, list(nodes.values()))
    finally:
        stop_pod_infrastructure(paths)


@pytest.fixture(scope="package")
def installed(nodes: dict[str, RealNode], images: dict[str, Any], postgres: Postgres,
              helm: Helm) -> Iterator[dict[str, dict[str, Any]]]:
    """burn, policy and evidence in both regions, the six installs at once."""
    jobs = {f"{release}/{region}": (lambda release=release, region=region:
                                   install_on_real_node(nodes[region], release, TAG, helm))
            for region in REGIONS for release in RELEASES}
    try:
        yield in_parallel(jobs)
    finally:
        # Without waiting: the node-down test may have stopped the nodes already, and nobody waits for the pods.
        in_parallel({key: (lambda key=key: uninstall(nodes[key.split("/")[1]], key.split("/")[0], helm,
                                                   wait=False))
                     for key in jobs})
