"""The suite's port bridge (``ig_infra.port_bridge``) as a component: which ports it forwards, started before any
regional component and stopped after them, when the regions run in network namespaces (ig_infra.suite_network).

Forwarded: each region's own listeners (PostgreSQL, Kafka, OPA, every port of its five services) from the host's
127.0.0.1, so that every documented address, certificate and client of the suite stays as it is; and, inside each
region, the shared components on the host (Dex, Prometheus, the Pushgateway, the witnesses), the only host ports a
region's services dial (``ServiceProcess`` refuses to start a service whose settings name any other).
"""

from __future__ import annotations

import sys
from pathlib import Path

from ig_infra.components.base import Component
from ig_infra.components.dex import Dex
from ig_infra.components.kafka import Kafka
from ig_infra.components.opa import Opa
from ig_infra.components.postgres import Postgres
from ig_infra.components.prometheus import Prometheus
from ig_infra.components.pushgateway import Pushgateway
from ig_infra.netns import port_open_in
from ig_infra.paths import Paths
from ig_infra.port_bridge import Route, read_routes, write_routes
from ig_infra.process import spawn, wait_until
from ig_infra.regions import SecondRegion
from ig_infra.services import SERVICES, ServiceSpec
from ig_infra.suite_network import SuiteNetwork, load
from ig_infra.witnesses import WITNESSES

LOOPBACK = "127.0.0.1"


def _service_ports(specs: tuple[ServiceSpec, ...]) -> dict[int, str]:
    ports: dict[int, str] = {}
    for spec in specs:
        for port in (spec.http_port, spec.grpc_port, *spec.extra_ports.values(), *spec.plain_ports.values()):
            if port is not None:
                ports[port] = spec.name
    return ports


def region_ports(paths: Paths) -> dict[str, dict[int, str]]:
    """Per region, its listeners: port -> what listens there."""
    second = SecondRegion.of(paths)
    own_a = {Postgres(paths).port: "postgres", Kafka(paths).port: "kafka", Opa(paths).port: "opa",
             **_service_ports(SERVICES)}
    own_b = {c.port: c.name for c in second.infra() if isinstance(c, Postgres | Kafka | Opa)}
    own_b.update(_service_ports(second.specs()))
    return {"region-a": own_a, "region-b": own_b}


def shared_ports(paths: Paths) -> dict[int, str]:
    ports = {Dex(paths).port: "dex", Prometheus(paths).port: "prometheus", Pushgateway(paths).port: "pushgateway"}
    for witness in WITNESSES:
        ports[witness.api_port] = witness.process_name
    return ports


def routes(paths: Paths, network: SuiteNetwork) -> list[Route]:
    found: list[Route] = []
    shared = shared_ports(paths)
    for region, ports in region_ports(paths).items():
        netns = network.region(region).netns
        found += [Route(None, LOOPBACK, port, netns, LOOPBACK, port, f"{region} {name}")
                  for port, name in sorted(ports.items())]
        found += [Route(netns, LOOPBACK, port, None, LOOPBACK, port, f"shared {name} for {region}")
                  for port, name in sorted(shared.items())]
    return found


class PortBridge(Component):
    name = "port-bridge"
    regional = False  # on the host: it reaches into both namespaces

    @property
    def routes_file(self) -> Path:
        return self.dir / "routes.json"

    def _network(self) -> SuiteNetwork | None:
        return load(self.paths.run)

    def served(self) -> list[Route]:
        """The routes the running bridge was started with (its routes file), none before the first start."""
        return read_routes(self.routes_file) if self.routes_file.exists() else []

    def start(self) -> None:
        network = self._network()
        if network is None:
            return
        wanted = routes(self.paths, network)
        if self.served() == wanted and self.healthy():
            return
        self.stop()  # not running, or serving other ports than this suite's settings give now
        write_routes(self.routes_file, wanted)
        spawn([sys.executable, "-m", "ig_infra.port_bridge", str(self.routes_file)], log_file=self.log_file,
              pid_file=self.pid_file)
        wait_until(self.healthy, timeout=20, what="the port bridge", log_file=self.log_file, alive=self.running)

    def healthy(self) -> bool:
        """Running, and listening where its first and last routes say (they are bound in order at its start)."""
        if self._network() is None:
            return True
        served = self.served()
        return self.running() and bool(served) and all(
            port_open_in(route.listen_netns, route.listen_host, route.listen_port) for route in (served[0], served[-1]))

    def address(self) -> str:
        network = self._network()
        if network is None:
            return "not used (loopback layout)"
        return (f"host 127.0.0.1 <-> {network.a.netns} / {network.b.netns}, "
                f"{len(self.served())} routes ({self.routes_file})")
