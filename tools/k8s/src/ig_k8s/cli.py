"""ig-k8s: Kubernetes delivery of the suite.

  ig-k8s up [--region R] [--tag T]       the clusters, a real node each, images built and imported, the nodes'
                                          PostgreSQL, every release installed as real pods (--wait --atomic); prints
                                          each region's addresses, pods and images (size, digest)
  ig-k8s up --simulated | --no-install    every release on kwok nodes only (no container runs) / the clusters only
  ig-k8s down | status                    stop everything up started / describe the clusters, nodes, pods, images
  ig-k8s node up|down|status [--region R] a real node per region: containerd, runc, CNI, kubelet, kube-proxy, CoreDNS
  ig-k8s prove-services [--region R]      a pod calls another pod by its Service's DNS name on the real node
  ig-k8s images [--service S] [--tag T]   build the Debian base and service images, import them into running nodes;
         [--subjects FILE]                --subjects: their digests as `ig-evidence build --subjects` reads them
  ig-k8s prove [--region R] [--service S] a pod of the service image on the real node: Running, Ready by its probe
  ig-k8s build [--allow-failure]          build/cache kube-apiserver, controller-manager, scheduler, kwok; get etcd
  ig-k8s dockerfiles [--check]            (re)write services/*/Dockerfile from the template, or check for drift
  ig-k8s docs [--check]                   (re)write the chart README value tables, or check for drift
  ig-k8s values-schema [--check]          (re)write each chart's values.schema.json from values.yaml, or check
  ig-k8s render CHART --region R          helm template with the region's values (what the checks validate)
  ig-k8s bench OUTPUT.json                time the checks, a cluster start and a region install
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ig_infra.paths import REPO_ROOT, Paths
from ig_infra.process import InfraError

from ig_k8s import dockerfiles, values_docs
from ig_k8s.suite import CHARTS_DIR, REGIONS, SERVICES


def _dockerfiles(check: bool) -> int:
    drift = []
    for relative, content in dockerfiles.expected_files().items():
        path = REPO_ROOT / relative
        if path.exists() and path.read_text() == content:
            continue
        if check:
            drift.append(relative)
        else:
            path.write_text(content)
            print(f"wrote {relative}")
    if drift:
        print("stale (run `uv run ig-k8s dockerfiles`): " + ", ".join(drift), file=sys.stderr)
        return 1
    return 0


def _docs(check: bool) -> int:
    charts = [service.chart_dir for service in SERVICES]
    if check:
        stale = values_docs.stale_readmes(charts)
        undocumented = {str(chart): values_docs.undocumented_leaves((chart / "values.yaml").read_text())
                        for chart in charts}
        problems = [f"{chart}: values without a `# --` description: {', '.join(leaves)}"
                    for chart, leaves in undocumented.items() if leaves]
        problems += [f"stale (run `uv run ig-k8s docs`): {readme}" for readme in stale]
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    for chart in charts:
        readme = chart / "README.md"
        existing = readme.read_text() if readme.exists() else f"# {chart.name}\n"
        readme.write_text(values_docs.render_readme(existing, (chart / "values.yaml").read_text()))
        print(f"wrote {readme.relative_to(REPO_ROOT)}")
    return 0


def _up(regions: list[str], install: bool, simulated: bool, tag: str) -> int:
    from ig_k8s.cluster import Binaries, SimulatedCluster
    from ig_k8s.helm import Helm
    from ig_k8s.releases import install_suite, load_release_set

    paths = Paths.from_environment()
    helm = Helm.create(paths)
    if install and not simulated:
        from ig_k8s.images import subjects_path
        from ig_k8s.real_suite import RealSuite

        suite = RealSuite(paths, tuple(regions), tag, load_release_set()[0]).up(helm)
        print("  seconds: " + ", ".join(f"{phase} {value}" for phase, value in suite.seconds.items()), flush=True)
        print(f"  the images' digests, for the release's provenance: {subjects_path(paths, tag)} "
              f"(make release IMAGE_SUBJECTS=that file)", flush=True)
    else:
        binaries = Binaries.ensure(paths)
        for region in regions:
            cluster = SimulatedCluster(region, paths)
            cluster.start(binaries)
            print(cluster.describe(), flush=True)
            if install:
                installed = install_suite(helm, cluster)
                print(f"  {region}: installed on kwok nodes: {', '.join(installed)}", flush=True)
    for region in regions:
        print(_overview(region, paths), flush=True)
    return 0


def _overview(region: str, paths: Paths) -> str:
    """The region's addresses, pods and images (with size and digest), or why there is nothing to show."""
    from ig_k8s.cluster import SimulatedCluster
    from ig_k8s.node import RealNode
    from ig_k8s.overview import collect, render

    cluster = SimulatedCluster(region, paths)
    if not cluster.apiserver_ready():
        return f"{region}: no API server answers at {cluster.server}"
    return render(collect(cluster, RealNode(region, paths), paths))


def _build(allow_failure: bool) -> int:
    """Build the cluster binaries. With --allow-failure a failed build is recorded (the cluster tests then skip and
    show why) instead of failing `make test`: the one case in which those tests may be skipped."""
    from ig_k8s.cluster import BUILD_FAILURE_FILE, Binaries

    paths = Paths.from_environment()
    record = paths.component_dir("k8s") / BUILD_FAILURE_FILE
    try:
        binaries = Binaries.ensure(paths)
    except InfraError as error:
        record.write_text(str(error))
        print(f"ig-k8s: the Kubernetes binaries could not be built:\n{error}", file=sys.stderr)
        return 0 if allow_failure else 1
    record.unlink(missing_ok=True)
    for name, path in vars(binaries).items():
        print(f"  {name}: {path}")
    return 0


def _down(regions: list[str]) -> int:
    from ig_k8s.real_suite import stop_everything

    stopped = stop_everything(Paths.from_environment(), regions)
    print("stopped: " + ("\n  ".join(["", *stopped]) if stopped else "nothing (was not running)"))
    return 0


def _status(regions: list[str]) -> int:
    from ig_k8s.cluster import SimulatedCluster
    from ig_k8s.node import RealNode

    paths = Paths.from_environment()
    for region in regions:
        print(SimulatedCluster(region, paths).describe())
        print(RealNode(region, paths).describe())
        print(_overview(region, paths))
    return 0


def _node(action: str, regions: list[str]) -> int:
    from ig_k8s.node import RealNode
    from ig_k8s.node_build import NodeBinaries

    paths = Paths.from_environment()
    if action == "status":
        for region in regions:
            print(RealNode(region, paths).describe())
        return 0
    if action == "down":
        cached = NodeBinaries.cached(paths)
        for region in regions:
            stopped = RealNode(region, paths).stop(cached)
            print(f"{region}: node stopped {', '.join(stopped) if stopped else 'nothing (was not running)'}")
        return 0
    binaries = NodeBinaries.ensure(paths)
    for region in regions:
        node = RealNode(region, paths)
        node.start(binaries)
        print(node.describe(), flush=True)
    return 0


def _images(services: list[str], tag: str, subjects: Path | None) -> int:
    from ig_k8s.images import build_and_load, write_release_subjects

    report = build_and_load(services, tag, Paths.from_environment())
    print(json.dumps(report, indent=2))
    if subjects is not None:
        print(f"wrote the images' subjects for `ig-evidence build --subjects` to "
              f"{write_release_subjects(report, subjects)}", file=sys.stderr)
    return 0


def _prove(regions: list[str], service: str, tag: str, services: bool) -> int:
    from ig_k8s.node_proof import prove
    from ig_k8s.service_proof import prove_services

    for region in regions:
        if services:
            report = prove_services(region, service, tag, Paths.from_environment())
            for rules in ("node_netns_rules", "host_rules"):  # the iptables dumps: only their size here
                report[rules] = f"{len(report[rules].splitlines())} lines"
        else:
            report = prove(region, service, tag, Paths.from_environment())
        print(json.dumps(report, indent=2), flush=True)
    return 0


def _values_schema(check: bool) -> int:
    from ig_k8s import values_schema

    charts = [service.chart_dir for service in SERVICES]
    if check:
        stale = values_schema.stale_schemas(charts)
        for path in stale:
            print(f"stale (run `uv run ig-k8s values-schema`): {path.relative_to(REPO_ROOT)}", file=sys.stderr)
        return 1 if stale else 0
    for chart in charts:
        (chart / values_schema.SCHEMA_FILE).write_text(values_schema.render(chart))
        print(f"wrote {(chart / values_schema.SCHEMA_FILE).relative_to(REPO_ROOT)}")
    return 0


def _render(chart: str, region: str) -> int:
    from ig_k8s.helm import Helm

    print(Helm.create().template(CHARTS_DIR / chart, region, release=chart), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ig-k8s", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("up", "down", "status"):
        sub = commands.add_parser(name)
        sub.add_argument("--region", choices=REGIONS, action="append", help="default: both regions")
        if name == "up":
            mode = sub.add_mutually_exclusive_group()
            mode.add_argument("--no-install", action="store_true", help="start the clusters only")
            mode.add_argument("--simulated", action="store_true",
                              help="install every release on kwok nodes only (no real node, no container runs)")
            sub.add_argument("--tag", default="dev", help="the tag of the images built and installed")
    node = commands.add_parser("node")
    node.add_argument("action", choices=("up", "down", "status"))
    node.add_argument("--region", choices=REGIONS, action="append", help="default: both regions")
    images = commands.add_parser("images")
    images.add_argument("--service", choices=[service.name for service in SERVICES], action="append",
                        help="default: burn")
    images.add_argument("--tag", default="dev")
    images.add_argument("--subjects", type=Path, default=None,
                        help="also write the images' in-toto subjects (name, manifest digest) to this JSON file")
    for name in ("prove", "prove-services"):
        prove = commands.add_parser(name)
        prove.add_argument("--region", choices=REGIONS, action="append", help="default: both regions")
        prove.add_argument("--service", choices=[service.name for service in SERVICES], default="burn")
        prove.add_argument("--tag", default="dev")
    commands.add_parser("build").add_argument("--allow-failure", action="store_true")
    for name in ("dockerfiles", "docs", "values-schema"):
        commands.add_parser(name).add_argument("--check", action="store_true")
    commands.add_parser("bench").add_argument("output")
    render = commands.add_parser("render")
    render.add_argument("chart", choices=[service.name for service in SERVICES])
    render.add_argument("--region", choices=REGIONS, required=True)
    args = parser.parse_args(argv)
    try:
        if args.command in ("up", "down", "status"):
            regions = args.region or list(REGIONS)
            if args.command == "up":
                return _up(regions, install=not args.no_install, simulated=args.simulated, tag=args.tag)
            return _down(regions) if args.command == "down" else _status(regions)
        if args.command == "node":
            return _node(args.action, args.region or list(REGIONS))
        if args.command == "images":
            return _images(args.service or ["burn"], args.tag, args.subjects)
        if args.command in ("prove", "prove-services"):
            return _prove(args.region or list(REGIONS), args.service, args.tag, args.command == "prove-services")
        if args.command == "bench":
            from ig_k8s.bench import run

            run(Path(args.output))
            return 0
        if args.command == "build":
            return _build(args.allow_failure)
        if args.command == "dockerfiles":
            return _dockerfiles(args.check)
        if args.command == "docs":
            return _docs(args.check)
        if args.command == "values-schema":
            return _values_schema(args.check)
        return _render(args.chart, args.region)
    except InfraError as error:
        print(f"ig-k8s: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())

