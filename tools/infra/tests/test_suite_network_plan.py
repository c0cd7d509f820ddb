"""The names and addresses ig_infra.suite_network gives a suite's regions, and the IG_NETWORK setting (pure: no
namespace is made here; e2e/test_suite_network.py builds real ones)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from ig_infra.cli import wanted_network
from ig_infra.suite_network import plan

RUN_DIRS = [Path("/var/tmp/ig-mc"), Path("/var/tmp/ig-mc-2"), Path("/tmp/fresh22/run"), Path("/var/tmp/x" * 20)]


@pytest.mark.parametrize("run", RUN_DIRS)
def test_interface_and_namespace_names_fit_the_kernel_limit(run: Path) -> None:
    network = plan(run)
    for region in network.regions:
        assert len(region.peer_if) <= 15, region.peer_if  # IFNAMSIZ - 1
        assert region.netns.startswith("igmc") and region.netns.endswith(region.region[-2:])


@pytest.mark.parametrize("run", RUN_DIRS)
def test_the_two_ends_of_the_link_share_one_private_slash_30(run: Path) -> None:
    network = plan(run)
    a, b = (ipaddress.ip_address(region.peer_address) for region in network.regions)
    subnet = ipaddress.ip_network(f"{a}/30", strict=False)
    assert b in subnet and a != b and subnet.is_private
    assert subnet.network_address != a and subnet.broadcast_address not in (a, b)


def test_two_run_dirs_never_share_a_namespace_and_one_run_dir_always_gets_the_same() -> None:
    names = {plan(run).a.netns for run in RUN_DIRS}
    assert len(names) == len(RUN_DIRS)
    assert plan(RUN_DIRS[0]) == plan(RUN_DIRS[0])


@pytest.mark.parametrize(("setting", "regions", "expected"), [
    (None, ["region-a", "region-b"], "netns"),
    ("netns", ["region-a", "region-b"], "netns"),
    ("loopback", ["region-a", "region-b"], "loopback"),
    (None, ["region-a"], "loopback"),
    ("netns", ["region-a"], "loopback"),
])
def test_ig_network_chooses_the_layout(setting: str | None, regions: list[str], expected: str,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    if setting is None:
        monkeypatch.delenv("IG_NETWORK", raising=False)
    else:
        monkeypatch.setenv("IG_NETWORK", setting)
    assert wanted_network(regions) == expected


def test_a_bad_ig_network_stops_start_up_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IG_NETWORK", "bridged")
    with pytest.raises(ValueError, match="invalid setting IG_NETWORK: 'bridged'"):
        wanted_network(["region-a", "region-b"])
