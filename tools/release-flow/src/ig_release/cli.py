"""ig-release: run a release's governance flow against the running suite.

    ig-release run --version v1.2.1 --profile demo|ci --artifacts DIR [--stage NAME ...]
    ig-release job --version v1.2.1 --publish dir:PATH|github [--collected DIR] [--key K --public-key PUB] ...
                   the release job (.github/workflows/release.yml): produce, build, sign, verify, publish
    ig-release stages
    ig-release flag show|pin|unpin KEY [--value JSON] --reason TEXT [--burn-grpc HOST:PORT]   (as the operator identity)
    ig-release burn [--service NAME] [--burn-api URL]   the burn report, GET /get-burn over HTTPS (as the operator)

Addresses come from IG_* variables (`uv run ig-infra env`); the defaults are the `make up` ports.
Exit status: 0 the flow completed, 1 a stage failed (named, with its log), 2 usage error.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from rich.console import Console

from ig_release import flags
from ig_release.context import ReleaseContext
from ig_release.flow import STAGES, run_flow, select
from ig_release.settings import PROFILES, Endpoints

VERSION = re.compile(r"^v\d+\.\d+\.\d+$")


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="ig-release", description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    commands = root.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the release flow")
    run.add_argument("--version", required=True, help="release, e.g. v1.2.1")
    run.add_argument("--profile", choices=sorted(PROFILES), default="demo")
    run.add_argument("--artifacts", type=Path, default=Path("artifacts/release"),
                     help="where every artifact, log and the bundle go (default artifacts/release)")
    run.add_argument("--image-subjects", type=Path, default=None, metavar="FILE",
                     help="the release's images (name, digest: `ig-k8s images --subjects`, `make k8s-up`), attested "
                          "in its provenance")
    run.add_argument("--stage", action="append", dest="stages", metavar="NAME",
                     help="run only these stages (repeatable); later stages may need earlier ones")
    from ig_release.release_job import add_arguments

    add_arguments(commands.add_parser("job", help="the release job: produce evidence, build, sign, verify, publish"))
    commands.add_parser("stages", help="list the stages")
    flag = commands.add_parser("flag", help="read, pin or unpin a feature flag (FlagService of the burn service)")
    flag.add_argument("action", choices=["show", "pin", "unpin"])
    flag.add_argument("key")
    flag.add_argument("--value", help="JSON value to pin (pin) or hand back (unpin): false, 50, \"text\"")
    flag.add_argument("--reason", default="", help="why (recorded in the flag history)")
    flag.add_argument("--burn-grpc", default=None, help="FlagService address (default $IG_BURN_GRPC or :50053)")
    burn = commands.add_parser("burn", help="print the burn service's report (GET /get-burn, as the operator)")
    burn.add_argument("--service", default=None, help="only this service's SLOs")
    burn.add_argument("--burn-api", default=None, help="the burn HTTPS API (default $IG_BURN_API or :8093)")
    return root


def burn_command(args: argparse.Namespace, console: Console) -> int:
    import json

    import httpx
    from ig_common.http_client import client_as

    url = args.burn_api or Endpoints.from_environment().burn_api
    params = {"service": args.service} if args.service else {}
    with client_as(flags.CLIENT_IDENTITY, url, "burn", timeout=10) as client:
        try:
            reply = client.get("/get-burn", params=params)
        except httpx.HTTPError as error:
            console.print(f"ig-release burn: {url}: {error}")
            return 1
    if reply.status_code != 200:
        console.print(f"ig-release burn: {reply.status_code}: {reply.text}")
        return 1
    print(json.dumps(reply.json(), indent=2))
    return 0


def flag_command(args: argparse.Namespace, console: Console) -> int:
    import grpc

    address = args.burn_grpc or Endpoints.from_environment().burn_grpc
    try:
        if args.action == "show":
            print(flags.show(address, args.key))
            return 0
        if not args.value or not args.reason:
            console.print("ig-release flag pin|unpin: --value and --reason are required")
            return 2
        # Who pinned it is the verified caller (the operator's certificate), recorded by the burn service.
        print(flags.set_flag(address, args.key, args.value, pinned=args.action == "pin", reason=args.reason))
        return 0
    except grpc.RpcError as error:
        console.print(f"ig-release flag: {error.code().name}: {error.details()}")
        return 1


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    console = Console(width=max(Console().width, 140))  # logs and CI capture: paths stay whole
    if args.command == "flag":
        return flag_command(args, console)
    if args.command == "burn":
        return burn_command(args, console)
    if args.command == "job":
        if not VERSION.match(args.version):
            console.print(f"ig-release: --version must look like v1.2.1, not {args.version!r}")
            return 2
        from ig_release.release_job import run_job

        return run_job(args, console)
    if args.command == "stages":
        for stage in STAGES:
            console.print(f"{stage.name:10} {stage.title}")
        return 0
    if not VERSION.match(args.version):
        console.print(f"ig-release: --version must look like v1.2.1, not {args.version!r}")
        return 2
    try:
        stages = select(args.stages)
    except ValueError as error:
        console.print(f"ig-release: {error}")
        return 2
    artifacts = args.artifacts.resolve() / args.version
    artifacts.mkdir(parents=True, exist_ok=True)
    ctx = ReleaseContext(args.version, PROFILES[args.profile], artifacts, Endpoints.from_environment())
    try:
        ctx.attest_images(args.image_subjects)
    except ValueError as error:
        console.print(f"ig-release: {error}")
        return 2
    return run_flow(ctx, stages, console)


if __name__ == "__main__":
    sys.exit(main())
