"""Each real node's own network namespace, so that the two regions' kube-proxies (one host) do not share iptables.

kube-proxy in iptables mode owns fixed chain names (KUBE-SERVICES, KUBE-SVC-*, KUBE-SEP-*, KUBE-POSTROUTING) and on
every sync rewrites them whole and deletes the KUBE-SVC/SEP chains it does not know. Two kube-proxies in one network
namespace would delete each other's rules, whatever their service CIDRs: disjoint CIDRs do not suffice. So each node
gets a namespace ``ig-<region>`` that holds its bridge, its pods' host-side veths and its kube-proxy rules:

    pods (10.244.N.0/24) -- bridge ig-br-X (10.244.N.1) --[netns ig-<region>]-- uplink 10.250.N.2
                                                                                   |  veth
                                                                 host: igv-X 10.250.N.1 (the node's InternalIP)

containerd, the kubelet, kube-proxy and CoreDNS stay in the host namespace: they reach the region's kube-apiserver on
127.0.0.1, which the node namespace cannot. What must act inside the node namespace is entered there by wrappers:
the CNI plugins (bridge, host-local, portmap, loopback) run under ``nsenter --net``, so the bridge and the pods'
veths are made there; kube-proxy finds ``iptables*`` (and ``nft``) wrappers first on its PATH, so its rules land in
the node namespace. The host routes the node's pod subnet to the uplink (the kubelet's probes, the tests); pods get
routes to the service CIDR and to the host link only (no default route: nothing beyond this host is theirs).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from ig_infra.process import InfraError

from ig_k8s.cluster import port_offset

SERVICE_CIDR = "10.96.0.0/16"  # the kube-apiserver's --service-cluster-ip-range (both regions: separate namespaces)
CLUSTER_DNS_IP = "10.96.0.10"
CLUSTER_DOMAIN = "cluster.local"
NFACCT_COUNTERS = ("ct_state_invalid_dropped_pkts",)
CNI_PLUGINS = ("bridge", "host-local", "portmap", "loopback")
NETFILTER_COMMANDS = ("iptables", "iptables-save", "iptables-restore", "ip6tables", "ip6tables-save",
                      "ip6tables-restore", "nft")


@dataclass(frozen=True)
class NodeNetwork:
    bridge: str
    subnet: str
    gateway: str
    kubelet_port: int
    kubelet_healthz_port: int
    netns: str
    host_veth: str
    host_address: str  # the host's end of the node's link: the node's InternalIP, where pods reach host services
    uplink_address: str  # the node namespace's end
    proxy_healthz_port: int
    proxy_metrics_port: int
    dns_health_port: int
    dns_ready_port: int

    @property
    def link_cidr(self) -> str:
        return f"{self.host_address.rsplit('.', 1)[0]}.0/30"


def _network(letter: str, index: int, base: int) -> NodeNetwork:
    offset = port_offset()
    return NodeNetwork(
        bridge=f"ig-br-{letter}", subnet=f"10.244.{index}.0/24", gateway=f"10.244.{index}.1",
        kubelet_port=base + 6250 + offset, kubelet_healthz_port=base + 6248 + offset,
        netns=f"ig-region-{letter}", host_veth=f"igv-{letter}", host_address=f"10.250.{index}.1",
        uplink_address=f"10.250.{index}.2", proxy_healthz_port=base + 6256 + offset,
        proxy_metrics_port=base + 6249 + offset, dns_health_port=base + 6280 + offset,
        dns_ready_port=base + 6281 + offset)


NETWORKS: dict[str, NodeNetwork] = {"region-a": _network("a", 1, 10000), "region-b": _network("b", 2, 20000)}


def netns_path(network: NodeNetwork) -> Path:
    return Path("/run/netns") / network.netns


def make_namespace(network: NodeNetwork) -> None:
    """The node's namespace, its link to the host, its bridge, and the host's route to its pods (idempotent)."""
    ns = network.netns
    if not netns_path(network).exists():
        run(["ip", "netns", "add", ns])
    run(["ip", "-n", ns, "link", "set", "lo", "up"])
    if not link_exists(network.host_veth):
        run(["ip", "link", "add", network.host_veth, "type", "veth", "peer", "name", "uplink", "netns", ns])
    _address(["ip"], network.host_veth, f"{network.host_address}/30")
    _address(["ip", "-n", ns], "uplink", f"{network.uplink_address}/30")
    run(["ip", "link", "set", network.host_veth, "up"])
    run(["ip", "-n", ns, "link", "set", "uplink", "up"])
    if not link_exists(network.bridge, ns):
        run(["ip", "-n", ns, "link", "add", network.bridge, "type", "bridge"])
    _address(["ip", "-n", ns], network.bridge, f"{network.gateway}/{network.subnet.split('/')[1]}")
    run(["ip", "-n", ns, "link", "set", network.bridge, "up"])
    # Pods reach the host link and services through the node namespace, which must forward (its own sysctl).
    run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
    run(["ip", "route", "replace", network.subnet, "via", network.uplink_address, "dev", network.host_veth])
    # kube-proxy's rule that drops conntrack-INVALID packets counts them in this nfacct object, which it creates over
    # netlink in its own (the host's) namespace; the rule, here, would refuse to load without one of its own.
    for counter in NFACCT_COUNTERS:
        listed = run(["ip", "netns", "exec", ns, "nfacct", "list"])
        if f" = {counter};" not in listed:
            run(["ip", "netns", "exec", ns, "nfacct", "add", counter])


def remove_namespace(network: NodeNetwork) -> bool:
    """Delete the namespace (its bridge, veths and rules go with it) and the host's end of the link."""
    removed = False
    if netns_path(network).exists():
        run(["ip", "netns", "delete", network.netns])
        removed = True
    # Deleting the namespace deletes the pair too, but not at once: the host's end may still show, then vanish.
    if link_exists(network.host_veth):
        gone = subprocess.run(["ip", "link", "delete", network.host_veth], capture_output=True, text=True)
        if gone.returncode != 0 and "Cannot find device" not in gone.stderr:
            raise InfraError(f"ip link delete {network.host_veth} failed: {gone.stderr.strip()}")
        removed = True
    return removed


def write_wrappers(network: NodeNetwork, cni_dir: Path, netfilter_dir: Path, cni_bin: Path) -> None:
    """CNI plugins and netfilter commands that run in the node's namespace (see the module docstring)."""
    enter = f"exec nsenter --net={netns_path(network)}"
    for directory, commands, source in ((cni_dir, CNI_PLUGINS, cni_bin), (netfilter_dir, NETFILTER_COMMANDS, None)):
        directory.mkdir(parents=True, exist_ok=True)
        for command in commands:
            target = cni_bin / command if source else _sbin(command)
            wrapper = directory / command
            wrapper.write_text(f'#!/bin/sh\n{enter} {target} "$@"\n')
            wrapper.chmod(0o755)


def pod_routes(network: NodeNetwork) -> list[dict[str, str]]:
    return [{"dst": network.subnet}, {"dst": SERVICE_CIDR}, {"dst": network.link_cidr}]


def netns_iptables(network: NodeNetwork, *args: str) -> str:
    return run(["ip", "netns", "exec", network.netns, "iptables", *args])


def link_exists(name: str, netns: str | None = None) -> bool:
    command = ["ip", *(["-n", netns] if netns else []), "link", "show", name]
    return subprocess.run(command, capture_output=True).returncode == 0


def _address(ip: list[str], device: str, cidr: str) -> None:
    shown = subprocess.run([*ip, "-4", "addr", "show", device], capture_output=True, text=True).stdout
    if f" {cidr} " not in shown:
        run([*ip, "addr", "add", cidr, "dev", device])


def _sbin(command: str) -> Path:
    return Path("/usr/sbin") / command


def run(command: list[str]) -> str:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise InfraError(f"{' '.join(command)} failed: {result.stderr.strip()}")
    return result.stdout
