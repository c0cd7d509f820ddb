"""The address plan: private, distinct per region, valid ports in the loopback fallback too."""

from __future__ import annotations

import ipaddress

import pytest
from ig_region_test.network import plan
from ig_region_test.pg import GLOBAL_PORT, RESIDENT_PORT
from ig_region_test.procs import KAFKA_CONTROLLER_PORT, KAFKA_PORT, OPA_PORT, POLICY_GRPC_PORT, POLICY_HTTP_PORT

BASE_PORTS = [GLOBAL_PORT, RESIDENT_PORT, KAFKA_PORT, KAFKA_CONTROLLER_PORT, OPA_PORT, POLICY_GRPC_PORT,
              POLICY_HTTP_PORT]


def test_loopback_fallback_says_so_and_uses_distinct_loopback_addresses_and_valid_ports() -> None:
    topology = plan(force_loopback=True, link_delay_ms=0)
    assert topology.mode == "loopback" and "FALLBACK" in topology.note
    a, b = topology.regions
    assert a.client_host != b.client_host
    assert all(ipaddress.ip_address(r.client_host).is_loopback for r in (a, b))
    ports_a = {a.port(p) for p in BASE_PORTS}
    ports_b = {b.port(p) for p in BASE_PORTS}
    assert all(0 < p < 65536 for p in ports_a | ports_b)
    assert len(ports_a) == len(ports_b) == len(BASE_PORTS)
    assert a.wrap(["true"]) == ["true"]


@pytest.mark.integration
def test_namespace_plan_uses_private_addresses_only() -> None:
    topology = plan(force_loopback=False, link_delay_ms=0)
    assert topology.mode == "netns", topology.note  # make test runs as root: namespaces must be there
    for region in topology.regions:
        for address in (region.client_host, region.peer_host):
            assert ipaddress.ip_address(address).is_private and not ipaddress.ip_address(address).is_loopback
        assert region.wrap(["true"])[:4] == ["ip", "netns", "exec", region.netns]
    assert topology.a.peer_host != topology.b.peer_host
