"""ig-infra: bring the real local infrastructure (and the services) up, down, or report on it.

    ig-infra up [COMPONENT ...]      install what is missing (cached), start, wait until ready
    ig-infra down [COMPONENT ...]    stop (services first)
    ig-infra status                  what runs where, and where its logs are
    ig-infra env                     shell exports that point clients at the running infra
    ig-infra services up|down        the five services and the ledger's witnesses (one per region) as local processes
    ig-infra tool NAME               build (once) and print the path of a Go tool (opa, buf, ...)
    ig-infra tools [NAME ...]        build (once) every Go tool (or those named), two at a time; print paths
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
import time

from ig_infra.components import ALL, Component, Kafka
from ig_infra.go_tools import ensure_all, tool_path
from ig_infra.paths import Paths
from ig_infra.process import InfraError
from ig_infra.services import PROCESSES, ServiceProcess, running_witnesses_env


def infra_components(paths: Paths, names: list[str] | None = None) -> list[Component]:
    known = {cls.name: cls for cls in ALL}
    unknown = [n for n in names or [] if n not in known]
    if unknown:
        raise InfraError(f"unknown component(s): {', '.join(unknown)}; known: {', '.join(known)}")
    return [cls(paths) for cls in ALL if not names or cls.name in names]


def up(paths: Paths, names: list[str] | None) -> None:
    from ig_common.events.topics import ALL_TOPICS

    for component in infra_components(paths, names):
        started = time.monotonic()
        print(f"[{component.name}] installing / checking cache", flush=True)
        component.install()
        component.start()
        print(f"[{component.name}] ready at {component.address()} in {time.monotonic() - started:.1f}s "
              f"(logs: {component.logs})", flush=True)
        if isinstance(component, Kafka):
            created = component.create_topics(list(ALL_TOPICS))
            print(f"[kafka] topics: {len(ALL_TOPICS)} ({len(created)} created)", flush=True)


def down(paths: Paths, names: list[str] | None) -> None:
    if not names:
        services_down(paths)
    for component in reversed(infra_components(paths, names)):
        if component.stop():
            print(f"[{component.name}] stopped", flush=True)


def status(paths: Paths) -> int:
    unhealthy = 0
    for component in infra_components(paths):
        state = "up" if component.healthy() else "down"
        unhealthy += state != "up"
        print(f"{component.name:<14} {state:<5} {component.address():<45} logs: {component.logs}")
    for spec in PROCESSES:
        service = ServiceProcess(spec, paths)
        state = "up" if service.running() and _quiet(service.healthy) else "down"
        print(f"{spec.name:<14} {state:<5} {service.address():<45} logs: {service.log_file}")
    return 1 if unhealthy else 0


def _quiet(check: object) -> bool:
    try:
        return bool(check())  # type: ignore[operator]
    except Exception:
        return False


def services_up(paths: Paths) -> None:
    infra = infra_components(paths)
    for spec in PROCESSES:
        service = ServiceProcess(spec, paths)
        started = time.monotonic()
        service.start(infra)
        print(f"[{spec.name}] healthy: {service.address()} in {time.monotonic() - started:.1f}s "
              f"(logs: {service.log_file})", flush=True)


def services_down(paths: Paths) -> None:
    for spec in reversed(PROCESSES):
        if ServiceProcess(spec, paths).stop():
            print(f"[{spec.name}] stopped", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ig-infra", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "down", "status", "env", "services", "tool", "tools"])
    parser.add_argument("args", nargs="*")
    options = parser.parse_args(argv)
    paths = Paths.from_environment()
    try:
        if options.command == "up":
            up(paths, options.args or None)
        elif options.command == "down":
            down(paths, options.args or None)
        elif options.command == "status":
            return status(paths)
        elif options.command == "env":
            for component in infra_components(paths):
                for key, value in component.env().items():
                    print(f"export {key}={shlex.quote(value)}")
            for key, value in running_witnesses_env(paths).items():
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
                services_up(paths)
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
