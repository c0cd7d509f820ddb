"""The two regions of `ig-infra up --regions a,b` as network namespaces joined by a link that can be cut:

    host: Dex, Prometheus, Pushgateway, witnesses, you
      |  ig_infra.port_bridge (documented 127.0.0.1 ports, both ways)
    region-a (igmc<tag>-a) <---- inter-region link (veth, 10.252.<n>.0/30) ----> region-b (igmc<tag>-b)

Each region's PostgreSQL, Kafka, OPA, global cluster and five services run inside its namespace and listen on
that namespace's 127.0.0.1. A namespace has no route anywhere but the inter-region link, so the only traffic
between the regions is what crosses that link (the global cluster's replication); setting it down
(``ig-infra failover``) is a real partition. The host reaches a region's listeners, and a region the shared
components on the host, only through the bridge, which opens its sockets inside the namespaces.

Names and addresses are derived from the run dir, so that two suites on one machine (a developer's and a test's)
never share a namespace; every address is private (10.252.0.0/16) and lives on veth pairs made here.
Where namespaces cannot be made (not root, no ``ip netns``) the suite keeps the loopback layout and says so.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from ig_infra.netns import NAMESPACE_FILE
from ig_infra.process import InfraError

PREFIX = "igmc"
LAYOUT_FILE = "network.json"  # in region-a's run dir: the whole topology
REGION_B_DIR = "region-b"


@dataclass(frozen=True)
class RegionLink:
    """One region's namespace and its two links."""

    region: str
    netns: str
    peer_address: str  # the region's end of the inter-region link: what the other region dials
    peer_if: str


@dataclass(frozen=True)
class SuiteNetwork:
    a: RegionLink
    b: RegionLink

    @property
    def regions(self) -> tuple[RegionLink, RegionLink]:
        return (self.a, self.b)

    def region(self, name: str) -> RegionLink:
        return self.a if name == self.a.region else self.b

    def other(self, name: str) -> RegionLink:
        return self.b if name == self.a.region else self.a


def _tag(run: Path) -> str:
    return hashlib.sha256(str(run.resolve()).encode()).hexdigest()[:5]


def plan(run: Path) -> SuiteNetwork:
    """Names and addresses of ``run``'s suite: namespaces ``igmc<tag>-a`` / ``-b`` and a /30 for the link."""
    tag = _tag(run)
    subnet = int(tag, 16) % 250

    def link(region: str, short: str, host: int) -> RegionLink:
        return RegionLink(region, f"{PREFIX}{tag}-{short}", f"10.252.{subnet}.{host}", f"{PREFIX}{tag}p{short}")

    return SuiteNetwork(link("region-a", "a", 1), link("region-b", "b", 2))


def load(run: Path) -> SuiteNetwork | None:
    """The topology ``run``'s suite was built with, None on the loopback layout."""
    try:
        raw = json.loads((run / LAYOUT_FILE).read_text())
    except FileNotFoundError:
        return None
    return SuiteNetwork(RegionLink(**raw["a"]), RegionLink(**raw["b"]))


def _ip(argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *argv], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise InfraError(f"ip {' '.join(argv)} failed: {(result.stderr or result.stdout).strip()}")
    return result


def namespaces_usable() -> tuple[bool, str]:
    """Try a throw-away namespace: the only reliable test."""
    probe = f"{PREFIX}-probe"
    try:
        _ip(["netns", "add", probe])
        _ip(["netns", "exec", probe, "ip", "link", "set", "lo", "up"])
    except (InfraError, FileNotFoundError) as error:
        return False, str(error)
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return True, "ip netns works"


def _exists(netns: str) -> bool:
    return netns in _ip(["netns", "list"], check=False).stdout.split()


def ensure(run: Path) -> SuiteNetwork:
    """Build (or keep) the namespaces and links of ``run``'s suite and record them in its run dirs."""
    network = plan(run)
    if not all(_exists(region.netns) for region in network.regions):
        destroy(run, network)
        _create(network)
    (run / LAYOUT_FILE).write_text(json.dumps({"a": asdict(network.a), "b": asdict(network.b)}, indent=2) + "\n")
    for region, directory in ((network.a, run), (network.b, run / REGION_B_DIR)):
        directory.mkdir(parents=True, exist_ok=True)
        (directory / NAMESPACE_FILE).write_text(region.netns + "\n")
    return network


def _create(network: SuiteNetwork) -> None:
    a, b = network.a, network.b
    for region in network.regions:
        _ip(["netns", "add", region.netns])
        _ip(["-n", region.netns, "link", "set", "lo", "up"])
    _ip(["link", "add", a.peer_if, "netns", a.netns, "type", "veth", "peer", "name", b.peer_if, "netns", b.netns])
    for region in network.regions:
        _ip(["-n", region.netns, "addr", "add", f"{region.peer_address}/30", "dev", region.peer_if])
        _ip(["-n", region.netns, "link", "set", region.peer_if, "up"])


def set_inter_region_link(network: SuiteNetwork, up: bool) -> str:
    """Cut (``up`` False) or restore the link between the regions; returns what was done."""
    state = "up" if up else "down"
    for region in network.regions:
        _ip(["-n", region.netns, "link", "set", region.peer_if, state])
    if up:  # a link set down loses its connected route; the address brings it back
        for region in network.regions:
            _ip(["-n", region.netns, "addr", "replace", f"{region.peer_address}/30", "dev", region.peer_if])
    return f"ip link set {network.a.peer_if}/{network.b.peer_if} {state}"


def inter_region_link_up(network: SuiteNetwork) -> bool:
    shown = _ip(["-n", network.a.netns, "-o", "link", "show", network.a.peer_if], check=False).stdout
    return "state UP" in shown or ",UP" in shown.split(">")[0]


def destroy(run: Path, network: SuiteNetwork | None = None) -> list[str]:
    """Remove ``run``'s namespaces (and with them the link; every process still inside is killed by the caller
    first) and the files that name them; returns what was removed."""
    network = network or load(run) or plan(run)
    removed = []
    for region in network.regions:
        if _exists(region.netns):
            _ip(["netns", "del", region.netns], check=False)
            removed.append(region.netns)
    for path in (run / LAYOUT_FILE, run / NAMESPACE_FILE, run / REGION_B_DIR / NAMESPACE_FILE):
        path.unlink(missing_ok=True)
    return removed


def pids_inside(netns: str) -> list[int]:
    out = _ip(["netns", "pids", netns], check=False).stdout
    return [int(pid) for pid in out.split() if pid.isdigit()]
