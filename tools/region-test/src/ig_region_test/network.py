"""Two regions as network namespaces joined by a veth link that can be cut, each reachable from the host.

    host (clients, controller) --veth "client link"--> region-a  <--veth "inter-region link"--> region-b
                                --veth "client link"--------------------------------------------> region-b

Namespaces have no default route and the host does not forward between them, so region-a reaches region-b
only over the inter-region link: setting that link down is a real partition. Every address is private and
lives inside the namespaces (or on the host end of our own veth pairs); nothing leaves the machine.

Where namespaces cannot be created the regions get distinct loopback addresses instead; there is then no
link to cut, and a partition is simulated by killing the failed region's processes (the run says so).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass

NS_PREFIX = "igrt-"
SUBNET = "10.251"  # 10.251.0.0/30 inter-region, 10.251.1.0/30 client link of A, 10.251.2.0/30 client link of B


class NetworkError(RuntimeError):
    pass


@dataclass(frozen=True)
class RegionNet:
    name: str  # region-a | region-b
    netns: str | None  # None in loopback fallback
    client_host: str  # the address clients on the host use
    peer_host: str  # the address the other region uses (inter-region link)
    port_offset: int  # 0 in namespaces; distinct ports per region on shared loopback
    host_if: str | None  # host end of the client link
    region_if: str | None  # region end of the client link
    peer_if: str | None  # region end of the inter-region link

    def wrap(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside this region's network namespace."""
        return ["ip", "netns", "exec", self.netns, *argv] if self.netns else list(argv)

    def port(self, base: int) -> int:
        return base + self.port_offset


@dataclass(frozen=True)
class Topology:
    mode: str  # "netns" | "loopback"
    a: RegionNet
    b: RegionNet
    link_delay_ms: float
    note: str

    @property
    def regions(self) -> tuple[RegionNet, RegionNet]:
        return (self.a, self.b)

    def region(self, name: str) -> RegionNet:
        return self.a if name == self.a.name else self.b

    def other(self, name: str) -> RegionNet:
        return self.b if name == self.a.name else self.a


def run(argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), capture_output=True, text=True)
    if check and result.returncode != 0:
        raise NetworkError(f"{' '.join(argv)} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result


def namespaces_available() -> tuple[bool, str]:
    """Try to create (and remove) a throw-away namespace: the only reliable test."""
    if os.geteuid() != 0:
        return False, "not root: network namespaces need CAP_NET_ADMIN"
    probe = f"{NS_PREFIX}probe"
    try:
        run(["ip", "netns", "add", probe])
        run(["ip", "netns", "exec", probe, "ip", "link", "set", "lo", "up"])
    except (NetworkError, FileNotFoundError) as error:
        return False, str(error)
    finally:
        run(["ip", "netns", "del", probe], check=False)
    return True, "ip netns works"


def plan(force_loopback: bool, link_delay_ms: float) -> Topology:
    usable, why = (False, "--network loopback requested") if force_loopback else namespaces_available()
    if usable:
        a = RegionNet("region-a", f"{NS_PREFIX}region-a", f"{SUBNET}.1.2", f"{SUBNET}.0.1", 0,
                      "igrt-h-a", "igrt-c-a", "igrt-ab")
        b = RegionNet("region-b", f"{NS_PREFIX}region-b", f"{SUBNET}.2.2", f"{SUBNET}.0.2", 0,
                      "igrt-h-b", "igrt-c-b", "igrt-ba")
        return Topology("netns", a, b, link_delay_ms, "network namespaces joined by a veth link")
    # Own addresses and shifted ports (50051 -> 60051/61051 ...), so nothing collides with the shared infra.
    a = RegionNet("region-a", None, "127.0.91.1", "127.0.91.1", 10000, None, None, None)
    b = RegionNet("region-b", None, "127.0.92.1", "127.0.92.1", 11000, None, None, None)
    return Topology("loopback", a, b, 0.0,
                    f"FALLBACK: network namespaces unavailable ({why}); regions on distinct loopback addresses, "
                    "no cuttable link: a partition is simulated by killing the failed region's processes")


def create(topology: Topology) -> list[str]:
    """Build the namespaces and links; returns notes about what could not be done exactly as asked."""
    notes: list[str] = []
    if topology.mode != "netns":
        return notes
    a, b = topology.a, topology.b
    for region in (a, b):
        run(["ip", "netns", "add", str(region.netns)])
        run(region.wrap(["ip", "link", "set", "lo", "up"]))
    run(["ip", "link", "add", str(a.peer_if), "netns", str(a.netns), "type", "veth",
         "peer", "name", str(b.peer_if), "netns", str(b.netns)])
    for region in (a, b):
        run(region.wrap(["ip", "addr", "add", f"{region.peer_host}/30", "dev", str(region.peer_if)]))
        run(region.wrap(["ip", "link", "set", str(region.peer_if), "up"]))
        run(["ip", "link", "add", str(region.host_if), "type", "veth", "peer", "name", str(region.region_if),
             "netns", str(region.netns)])
        host_addr = region.client_host.rsplit(".", 1)[0] + ".1"
        run(["ip", "addr", "add", f"{host_addr}/30", "dev", str(region.host_if)])
        run(["ip", "link", "set", str(region.host_if), "up"])
        run(region.wrap(["ip", "addr", "add", f"{region.client_host}/30", "dev", str(region.region_if)]))
        run(region.wrap(["ip", "link", "set", str(region.region_if), "up"]))
        if topology.link_delay_ms > 0:
            # Half the round trip on each end of the inter-region link, like a WAN between two regions.
            added = run(region.wrap(["tc", "qdisc", "add", "dev", str(region.peer_if), "root", "netem", "delay",
                                     f"{topology.link_delay_ms / 2:g}ms"]), check=False)
            if added.returncode != 0:
                notes.append(f"no added inter-region latency: tc netem unavailable ({added.stderr.strip()})")
    return sorted(set(notes))


def set_inter_region_link(topology: Topology, up: bool) -> str:
    """Cut (or restore) the link between the regions; returns what was done, for the timeline."""
    if topology.mode != "netns":
        return "no inter-region link in loopback fallback"
    state = "up" if up else "down"
    for region in topology.regions:
        run(region.wrap(["ip", "link", "set", str(region.peer_if), state]))
    if up:
        for region in topology.regions:  # link down drops the connected route; bring the addresses back
            run(region.wrap(["ip", "addr", "replace", f"{region.peer_host}/30", "dev", str(region.peer_if)]))
    return f"ip link set {topology.a.peer_if}/{topology.b.peer_if} {state}"


def set_client_link(topology: Topology, region: RegionNet, up: bool) -> str:
    if topology.mode != "netns":
        return "no client link in loopback fallback"
    state = "up" if up else "down"
    run(region.wrap(["ip", "link", "set", str(region.region_if), state]))
    run(["ip", "link", "set", str(region.host_if), state])
    if up:
        host_addr = region.client_host.rsplit(".", 1)[0] + ".1"
        run(["ip", "addr", "replace", f"{host_addr}/30", "dev", str(region.host_if)])
        run(region.wrap(["ip", "addr", "replace", f"{region.client_host}/30", "dev", str(region.region_if)]))
    return f"ip link set {region.host_if}/{region.region_if} {state}"


def existing_namespaces() -> list[str]:
    listing = run(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in listing.splitlines() if line.startswith(NS_PREFIX)]


def kill_namespace_processes(netns: str, grace: float = 5.0) -> int:
    """SIGTERM then SIGKILL every process inside ``netns``; returns how many there were."""
    pids = _pids_in(netns)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _pids_in(netns):
        time.sleep(0.1)
    for pid in _pids_in(netns):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _pids_in(netns):
        time.sleep(0.1)
    return len(pids)


def _pids_in(netns: str) -> list[int]:
    out = run(["ip", "netns", "pids", netns], check=False).stdout
    return [int(pid) for pid in out.split() if pid.isdigit()]


def destroy_all() -> list[str]:
    """Remove every namespace and host-side veth this tool creates, killing what runs inside first."""
    removed = []
    for netns in existing_namespaces():
        kill_namespace_processes(netns)
        run(["ip", "netns", "del", netns], check=False)
        removed.append(netns)
    links = run(["ip", "-o", "link", "show"], check=False).stdout
    for line in links.splitlines():
        name = line.split(":", 2)[1].strip().split("@")[0] if ":" in line else ""
        if name.startswith("igrt-"):
            run(["ip", "link", "del", name], check=False)
            removed.append(name)
    return removed
