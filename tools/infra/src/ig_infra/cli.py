"""ig-infra: bring the real local infrastructure (and the services) up, down, or report on it.

    ig-infra up [COMPONENT ...]      install what is missing (cached), start, wait until ready
    ig-infra up --regions a,b        ... and region-b's own PostgreSQL, Kafka, OPA (ig_infra.regions)
    ig-infra down [COMPONENT ...]    stop (services first; region-b's too)
    ig-infra status                  what runs where, per region, and where its logs are
    ig-infra env [--region b]        shell exports that point clients at the running infra (of region-b)
    ig-infra services up|down        the five services and the ledger's witnesses (one per region) as local processes
    ig-infra services up --regions a,b   ... and region-b's five services (IG_REGION=region-b)
    ig-infra services up --profile demo  ... burn on scaled windows with the release flow's demo SLOs (`make up`)
    ig-infra tool NAME               build (once) and print the path of a Go tool (opa, buf, ...)
    ig-infra tools [NAME ...]        build (once) every Go tool (or those named), two at a time; print paths
    ig-infra failover | failback     partition region-a and promote region-b's global replica / undo it
                                     (ig_region_test.suite_cli; `ig-infra failover --help`)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from ig_infra.components import ALL, Component, Kafka
from ig_infra.components.global_pg import GlobalPostgres
from ig_infra.go_tools import ensure_all, tool_path
from ig_infra.paths import Paths
from ig_infra.process import InfraError
from ig_infra.regions import REGION_A, REGION_B, SecondRegion, parse_regions
from ig_infra.services import DEFAULT_REGION, PROCESSES, PROFILES, ServiceProcess, running_witnesses_env
from ig_infra.suite_bridge import PortBridge
from ig_infra.suite_network import destroy as destroy_network
from ig_infra.suite_network import ensure as ensure_network
from ig_infra.suite_network import inter_region_link_up, namespaces_usable, pids_inside
from ig_infra.suite_network import load as load_network

NETWORKS = ("netns", "loopback")


def infra_components(paths: Paths, names: list[str] | None = None) -> list[Component]:
    known = {cls.name: cls for cls in ALL}
    unknown = [n for n in names or [] if n not in known]
    if unknown:
        raise InfraError(f"unknown component(s): {', '.join(unknown)}; known: {', '.join(known)}")
    return [cls(paths) for cls in ALL if not names or cls.name in names]


def wanted_network(regions: list[str]) -> str:
    """IG_NETWORK: ``netns`` (the default of two regions) or ``loopback``; one region is always on the loopback."""
    wanted = os.environ.get("IG_NETWORK", "netns")
    if wanted not in NETWORKS:
        raise ValueError(f"invalid setting IG_NETWORK: {wanted!r} is none of {', '.join(NETWORKS)}")
    return wanted if REGION_B in regions else "loopback"


def prepare_network(paths: Paths, regions: list[str]) -> None:
    """The regions' network namespaces and the bridge to them, built before anything starts; a suite running on
    the other layout is stopped first (a process cannot move into a namespace)."""
    wanted, current = wanted_network(regions), load_network(paths.run)
    if wanted == "netns" and current is None:
        usable, why = namespaces_usable()
        if not usable:
            print(f"!! FALLBACK: network namespaces unavailable ({why}): both regions listen on this machine's "
                  "127.0.0.1 on distinct ports, with no inter-region link to cut (`ig-infra failover` then freezes "
                  "region-a instead)", flush=True)
            wanted = "loopback"
    if (wanted == "netns") != (current is not None):
        print(f"[network] switching the suite to the {wanted} layout: stopping what runs on the other", flush=True)
        down(paths, None)
    if wanted == "netns":
        network = ensure_network(paths.run)
        print(f"[network] region-a in {network.a.netns} ({network.a.peer_address}), region-b in {network.b.netns} "
              f"({network.b.peer_address}), joined by {network.a.peer_if}/{network.b.peer_if}", flush=True)
        start_components([PortBridge(paths)])


def up(paths: Paths, names: list[str] | None, regions: list[str] | None = None) -> None:
    if not names:
        prepare_network(paths, regions or [REGION_A])
    start_components(infra_components(paths, names))
    second = SecondRegion.of(paths)
    if not names:
        second.want(REGION_B in (regions or []))
    if REGION_B in (regions or []):
        # Named components: region-b's of the same names (the global pair goes with "postgres").
        chosen = [c for c in second.infra() if not names or c.name.removesuffix("-global") in names]
        if any(isinstance(c, GlobalPostgres) for c in chosen):
            start_components([second.global_primary()])
        start_components(chosen, prefix=f"{REGION_B} ")


def start_components(components: list[Component], prefix: str = "") -> None:
    from ig_common.events.topics import ALL_TOPICS

    for component in components:
        started = time.monotonic()
        print(f"[{prefix}{component.name}] installing / checking cache", flush=True)
        component.install()
        component.start()
        print(f"[{prefix}{component.name}] ready at {component.address()} in {time.monotonic() - started:.1f}s "
              f"(logs: {component.logs})", flush=True)
        if isinstance(component, Kafka):
            created = component.create_topics(list(ALL_TOPICS))
            print(f"[{prefix}kafka] topics: {len(ALL_TOPICS)} ({len(created)} created)", flush=True)


def down(paths: Paths, names: list[str] | None) -> None:
    second = SecondRegion.of(paths)
    if not names:
        services_down(paths)
        if second.started():  # "down" stops everything: region-b's stack too, whether or not --regions says so
            for component in reversed(second.infra()):
                if component.stop():
                    print(f"[{REGION_B} {component.name}] stopped", flush=True)
            if second.global_primary().stop():
                print("[postgres-global] stopped", flush=True)
    for component in reversed(infra_components(paths, names)):
        if component.stop():
            print(f"[{component.name}] stopped", flush=True)
    if not names:
        if PortBridge(paths).stop():
            print("[port-bridge] stopped", flush=True)
        network = load_network(paths.run)
        if network is not None:
            left = [pid for region in network.regions for pid in pids_inside(region.netns)]
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 9)
            removed = destroy_network(paths.run, network)
            print(f"[network] removed {', '.join(removed) or 'nothing'}"
                  + (f" ({len(left)} leftover processes killed)" if left else ""), flush=True)


FAILOVER_STATE = "failover/state.json"  # written by `ig-infra failover`, removed by `ig-infra failback`


def status(paths: Paths) -> int:
    if (paths.run / FAILOVER_STATE).exists():
        if load_network(paths.run) is not None:
            print("!! region-a is partitioned by `ig-infra failover`: the inter-region link is down and region-a's "
                  "global cluster is fenced; `ig-infra failback` undoes it", flush=True)
        else:
            print("!! region-a is partitioned by `ig-infra failover`: its PostgreSQL, Kafka, OPA and services are "
                  "frozen (SIGSTOP; a frozen PostgreSQL may still look up: its port accepts connections) and its "
                  "global cluster is fenced; `ig-infra failback` undoes it", flush=True)
    second = SecondRegion.of(paths)
    shown = second.wanted() or second.started()
    network = load_network(paths.run)
    if network is not None:
        link = "up" if inter_region_link_up(network) else "DOWN (partitioned)"
        print(f"network: region-a in namespace {network.a.netns} ({network.a.peer_address}), region-b in "
              f"{network.b.netns} ({network.b.peer_address}), inter-region link {link}; every 127.0.0.1 address "
              "below is the host's, forwarded into its region by the port bridge")
    elif shown:
        print("network: loopback layout (both regions on this machine's 127.0.0.1; no inter-region link to cut)")
    if shown:
        print(f"== {REGION_A} (and what both regions share: Dex, Prometheus, Pushgateway, the witnesses)")
    bridge = [PortBridge(paths)] if network is not None else []
    unhealthy = _status_rows([*bridge, *infra_components(paths)], [ServiceProcess(spec, paths) for spec in PROCESSES])
    if shown:
        # Down and not asked for by the last `up` (a single-region one): listed, not counted as a failure.
        counted = second.wanted()
        unhealthy_b = _status_rows([second.global_primary()], [])
        print(f"== {REGION_B}: `ig-infra env --region b` points a client at it"
              + ("" if counted else " (not asked for by the last `ig-infra up`: not counted)"))
        unhealthy_b += _status_rows(second.infra(), second.services())
        unhealthy += unhealthy_b if counted else 0
    return 1 if unhealthy else 0


def _status_rows(components: list[Component], services: list[ServiceProcess]) -> int:
    unhealthy = 0
    for component in components:
        state = "up" if _quiet(component.healthy) else "down"  # a frozen one may time out instead of answering
        unhealthy += state != "up"
        print(f"{component.name:<16} {state:<5} {component.address():<45} logs: {component.logs}")
    for service in services:
        state = "up" if service.running() and _quiet(service.healthy) else "down"
        print(f"{service.spec.name:<16} {state:<5} {service.address():<45} logs: {service.log_file}")
    return unhealthy


def client_env(paths: Paths, region: str) -> dict[str, str]:
    """region-a: the infra's settings as always; region-b: the shared parts' (Dex, Prometheus, Pushgateway) with
    region-b's own infrastructure and services over them."""
    env: dict[str, str] = {}
    for component in infra_components(paths):
        env.update(component.env())
    env.update(running_witnesses_env(paths))
    env["IG_BURN_DEMO_ID"] = DEFAULT_REGION  # names the demo profile's SLOs and synthetic job (ig_burn.devtools.demo)
    if parse_regions(f"a,{region}")[-1] == REGION_B:
        env.pop("IG_WITNESS_VERIFIER_KEYS", None)  # region-b's ledger is not witnessed yet (ig_infra.regions)
        env.update(SecondRegion.of(paths).client_env())
    return env


def _quiet(check: object) -> bool:
    try:
        return bool(check())  # type: ignore[operator]
    except Exception:
        return False


def services_up(paths: Paths, regions: list[str] | None = None, profile: str = "production") -> None:
    start_services([ServiceProcess(spec, paths, profile) for spec in PROCESSES], infra_components(paths))
    if REGION_B in (regions or []):
        second = SecondRegion.of(paths)
        start_services(second.services(profile), second.service_infra(), prefix=f"{REGION_B} ", side_by_side=True)


def start_services(services: list[ServiceProcess], infra: list[Component], prefix: str = "", *,
                   side_by_side: bool = False) -> None:
    """One after the other (region-a: its witnesses must answer before evidence starts), or ``side_by_side``
    (region-b's five need nothing of each other to come up healthy: two start at a time, one per core of the
    machines this runs on, so that no start-up starves past its 60 s health timeout)."""
    def start(service: ServiceProcess) -> None:
        started = time.monotonic()
        service.start(infra)
        print(f"[{prefix}{service.spec.name}] healthy: {service.address()} in {time.monotonic() - started:.1f}s "
              f"(logs: {service.log_file})", flush=True)

    if not side_by_side:
        for service in services:
            start(service)
        return
    with ThreadPoolExecutor(max_workers=2) as pool:
        for future in [pool.submit(start, service) for service in services]:
            future.result()


def services_down(paths: Paths) -> None:
    second = SecondRegion.of(paths)
    for service in reversed(second.services() if second.started() else []):
        if service.stop():
            print(f"[{REGION_B} {service.spec.name}] stopped", flush=True)
    for spec in reversed(PROCESSES):
        if ServiceProcess(spec, paths).stop():
            print(f"[{spec.name}] stopped", flush=True)


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] in (["failover"], ["failback"]):
        # The drill lives with region-test's (its writer and RPO/RTO measure); imported here only when asked for.
        from ig_region_test.suite_cli import main as failover_main

        return failover_main(arguments)
    parser = argparse.ArgumentParser(prog="ig-infra", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "down", "status", "env", "services", "tool", "tools"])
    parser.add_argument("args", nargs="*")
    parser.add_argument("--regions", default=None,
                        help="up / services up: the regions to start, a or a,b (default: IG_REGIONS, else a)")
    parser.add_argument("--region", default="a", help="env: the region whose endpoints to export (a or b)")
    parser.add_argument("--profile", default="production", choices=PROFILES,
                        help="services up: demo = burn on windows / 86400 with the release flow's demo SLOs (make up)")
    options = parser.parse_args(arguments)
    paths = Paths.from_environment()
    try:
        regions = parse_regions(options.regions or os.environ.get("IG_REGIONS") or "a")
        if options.command == "up":
            up(paths, options.args or None, regions)
        elif options.command == "down":
            down(paths, options.args or None)
        elif options.command == "status":
            return status(paths)
        elif options.command == "env":
            for key, value in client_env(paths, options.region).items():
                print(f"export {key}={shlex.quote(value)}")
        elif options.command == "tool":
            if len(options.args) != 1:
                parser.error("tool takes one name")
            # Callers capture stdout as the path ("$(ig-infra tool buf)"): a first-time build's progress goes to stderr.
            with contextlib.redirect_stdout(sys.stderr):
                tool = tool_path(paths.cache, options.args[0])
            print(tool)
        elif options.command == "tools":
            started = time.monotonic()
            for name, tool in ensure_all(paths.cache, options.args or None).items():
                print(f"  {name}: {tool}")
            print(f"tools ready in {time.monotonic() - started:.1f}s", flush=True)
        elif options.command == "services":
            action = options.args[0] if options.args else ""
            if action == "up":
                services_up(paths, regions, options.profile)
            elif action == "down":
                services_down(paths)
            else:
                parser.error("services takes 'up' or 'down'")
    except InfraError as error:
        print(f"ig-infra: {error}", file=sys.stderr)
        return 1
    except ValueError as error:
        print(f"ig-infra: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
