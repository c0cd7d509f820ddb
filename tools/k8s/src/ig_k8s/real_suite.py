"""Every service of the suite as real pods in both regions: what `make k8s-up` (``ig-k8s up``) runs, and what the
real-node test package's set-up runs (tools/k8s/tests/real/conftest.py), through the same ``RealSuite.up``.

In order: each region's cluster and real node (regions in parallel; the binaries built when missing), the Debian base
and every service image built here and imported into both nodes (each only when its inputs changed: images.py), each
region's own PostgreSQL, Kafka, Prometheus and Dex exposed to that region's pods (pod_infra.py), then ``helm upgrade
--install --wait --atomic`` of every release of the release set (charts/releases.yaml) into both regions at once.
``release`` undoes
what this suite started; ``stop_everything`` (``ig-k8s down``) stops whatever runs, whoever started it, and forgets
the clusters' state.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from ig_infra.paths import Paths

from ig_k8s.cluster import Binaries, SimulatedCluster
from ig_k8s.helm import Helm
from ig_k8s.images import build_and_load, subjects_path, write_release_subjects
from ig_k8s.node import RealNode
from ig_k8s.node_build import NodeBinaries
from ig_k8s.pod_infra import (
    RegionInfra,
    running_regions,
    start_pod_infrastructure,
    stop_legacy_postgres,
    stop_region_infrastructure,
)
from ig_k8s.real_charts import install_on_real_node, portal_public_url, uninstall
from ig_k8s.releases import load_release_set
from ig_k8s.suite import in_parallel

# Ten installs share two cores with the suite's pods starting: helm's --wait gets more room than one install needs.
INSTALL_TIMEOUT = "600s"


def suite_releases() -> list[str]:
    """Every release of the release set, in its order."""
    return [release.name for release in load_release_set()[1]]


@dataclass
class RealSuite:
    """One bring-up of the suite on the real nodes; its fields fill as ``up`` goes, so ``release`` after a failed
    ``up`` undoes what had started."""

    paths: Paths
    regions: tuple[str, ...]
    tag: str
    namespace: str
    nodes: dict[str, RealNode] = field(default_factory=dict)
    images: dict[str, Any] = field(default_factory=dict)
    # Each region's own PostgreSQL, Kafka, Prometheus and Dex (pod_infra.py), by region.
    infra: dict[str, RegionInfra] = field(default_factory=dict)
    # "<release>/<region>": what install_on_real_node returned (its pods as seen right after helm's --wait).
    installed: dict[str, dict[str, Any]] = field(default_factory=dict)
    # What ``up`` found stopped and started: ``release`` stops only these.
    started_clusters: list[SimulatedCluster] = field(default_factory=list)
    started_nodes: list[RealNode] = field(default_factory=list)
    started_infra: list[str] = field(default_factory=list)
    # Phase durations and, per region, the seconds from the start of ``up`` until its last release was Ready.
    seconds: dict[str, float] = field(default_factory=dict)

    def up(self, helm: Helm) -> RealSuite:
        began = time.monotonic()
        self._timed("clusters_and_nodes", self._start_nodes)
        self.images = self._timed("images_built_and_imported",
                                  lambda: build_and_load(suite_releases(), self.tag, self.paths))
        write_release_subjects(self.images, subjects_path(self.paths, self.tag))
        self.started_infra = [region for region in self.regions if region not in running_regions(self.paths)]
        self.infra = self._timed("pod_infrastructure", lambda: start_pod_infrastructure(
            self.paths, list(self.nodes.values()), self._portal_redirect_uris(helm)))
        self.installed = self._timed("installs", lambda: self._install_all(helm, began))
        self.seconds["total"] = round(time.monotonic() - began, 1)
        return self

    def _portal_redirect_uris(self, helm: Helm) -> dict[str, tuple[str, ...]]:
        """What each region's Dex must accept: this suite's portal's public URL + /callback (its chart renders the
        Service's name in this suite's namespace; another namespace's portal then no longer signs in)."""
        return {region: (f"{portal_public_url(helm, region, self.namespace)}/callback",) for region in self.regions}

    def _timed(self, phase: str, action: Any) -> Any:
        started = time.monotonic()
        result = action()
        self.seconds[phase] = round(time.monotonic() - started, 1)
        return result

    def _start_nodes(self) -> None:
        binaries = Binaries.ensure(self.paths)
        node_binaries = NodeBinaries.ensure(self.paths)

        def start(region: str) -> RealNode:
            cluster = SimulatedCluster(region, self.paths)
            if not cluster.healthy():
                self.started_clusters.append(cluster)
                cluster.start(binaries)
            node = self.nodes[region] = RealNode(region, self.paths)
            if not node.running():
                self.started_nodes.append(node)
            node.start(node_binaries)
            return node

        in_parallel({region: partial(start, region) for region in self.regions})

    def _install_all(self, helm: Helm, began: float) -> dict[str, dict[str, Any]]:
        """Every release in every region at once: each waits mostly on its pods' probes, not on this process."""
        ready_at: dict[str, float] = {}

        def install(release: str, region: str) -> dict[str, Any]:
            result = install_on_real_node(self.nodes[region], release, self.tag, helm, self.namespace,
                                          timeout=INSTALL_TIMEOUT)
            ready_at[region] = max(ready_at.get(region, 0.0), time.monotonic())
            return result

        installed = in_parallel({f"{release}/{region}": partial(install, release, region)
                                 for region in self.regions for release in suite_releases()})
        for region, at in ready_at.items():
            self.seconds[f"{region}_all_pods_ready"] = round(at - began, 1)
        return installed

    def release(self, helm: Helm) -> None:
        """Uninstall this suite's releases (without waiting: the nodes may be stopped already), stop the nodes, the
        pod infrastructure and the clusters this suite started (not those someone else had running), forgetting
        the clusters' state."""
        try:
            in_parallel({key: partial(uninstall, self.nodes[key.split("/")[1]], key.split("/")[0], helm,
                                      self.namespace, wait=False) for key in self.installed})
        finally:
            # Each region's stops mostly wait on processes ending: the regions side by side.
            binaries = NodeBinaries.cached(self.paths)
            in_parallel({node.region: partial(node.stop, binaries) for node in self.started_nodes})
            in_parallel({region: partial(stop_region_infrastructure, self.paths, region)
                         for region in self.started_infra})
            in_parallel({cluster.region: partial(cluster.stop, forget=True) for cluster in self.started_clusters})


def stop_everything(paths: Paths, regions: list[str]) -> list[str]:
    """``ig-k8s down``: the real nodes (containers, shims, network namespaces, cgroups, images), each region's pod
    infrastructure (PostgreSQL, Kafka) and the clusters; returns what was running."""
    binaries = NodeBinaries.cached(paths)
    # Each node's stop mostly waits (on its kubelet, its containers' ends): both at once.
    by_region = in_parallel({region: partial(RealNode(region, paths).stop, binaries) for region in regions})
    stopped = [f"{region} node: {what}" for region, done in by_region.items() for what in done]
    infrastructure = in_parallel({region: partial(stop_region_infrastructure, paths, region) for region in regions})
    stopped += [what for done in infrastructure.values() for what in done]
    if stop_legacy_postgres(paths):
        stopped.append("the pod infrastructure PostgreSQL both regions shared before each had its own")
    clusters = in_parallel({region: partial(SimulatedCluster(region, paths).stop, forget=True) for region in regions})
    stopped += [f"{region}: {what}" for region, done in clusters.items() for what in done]
    return stopped
