"""The whole suite on the real nodes of both regions, brought up once for every test of this package (package scope:
torn down after the package's last test, not at the end of a `make test` session) by ``RealSuite.up``, the entry
point `make k8s-up` runs: clusters and nodes, every service image built (when its inputs changed) and imported, each
region's own PostgreSQL and Kafka, and every release of the release set installed with `--wait --atomic` (in the
package's own namespace, not `make k8s-up`'s).

Nothing skips: a binary or image that cannot be built, or a node or install that fails, fails the tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from ig_infra.paths import Paths
from ig_k8s.helm import Helm
from ig_k8s.node import RealNode
from ig_k8s.pod_infra import RegionInfra
from ig_k8s.real_charts import NAMESPACE
from ig_k8s.real_suite import RealSuite
from ig_k8s.suite import REGIONS

TAG = "node-test"
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
def suite(helm: Helm) -> Iterator[RealSuite]:
    """What `make k8s-up` had running is left running (the node-down test stops the nodes anyway); what this
    suite started is stopped, also after a run that failed before the node-down test."""
    up = RealSuite(Paths.from_environment(), REGIONS, TAG, NAMESPACE)
    try:
        yield up.up(helm)
    finally:
        up.release(helm)


@pytest.fixture(scope="package")
def nodes(suite: RealSuite) -> dict[str, RealNode]:
    return suite.nodes


@pytest.fixture(scope="package")
def image_tag() -> str:
    return TAG


@pytest.fixture(scope="package")
def images(suite: RealSuite) -> dict[str, Any]:
    """Every service image (and the base and OPA's), built once (buildah's layer cache keeps a warm build short)
    and imported into both nodes."""
    return suite.images


@pytest.fixture(scope="package")
def infra(suite: RealSuite) -> dict[str, RegionInfra]:
    """Each region's own PostgreSQL and Kafka, as the pods of that region reach them."""
    assert set(suite.infra) == set(REGIONS)
    return suite.infra


@pytest.fixture(scope="package")
def installed(suite: RealSuite) -> dict[str, dict[str, Any]]:
    """Every release in both regions, as ``RealSuite.up`` installed them (all at once)."""
    return suite.installed
