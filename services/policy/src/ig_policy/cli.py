"""``ig-policy``: the policy service's operator commands.

``replay``: a candidate policy against logged decisions. ``keygen --out DIR``: a new decision-log pepper and replay
key pair (``pepper`` and ``input-key.pub`` for the service, ``replay.key`` for whoever replays). ``approver-key`` and
``break-glass``: a break-glass approver's key pair and the grant it signs (ig_policy.cli_breakglass). ``wasm-build
--policies DIR --out FILE``: the in-process module of a policy directory (IG_POLICY_WASM_BUNDLE)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ig_policy import cli_breakglass, replay
from ig_policy.engine.candidate import CandidateError, find_opa
from ig_policy.engine.wasm_build import build_wasm_bundle
from ig_policy.protection_keys import write_decision_log_keys


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ig-policy", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    replay.add_arguments(commands.add_parser(
        "replay", help="re-evaluate logged decisions against a candidate policy and report what would change"))
    keygen = commands.add_parser("keygen", help="write a new decision-log pepper and replay key pair")
    keygen.add_argument("--out", required=True, type=Path, help="directory for pepper, input-key.pub, replay.key")
    build = commands.add_parser("wasm-build", help="compile a policy directory to the service's in-process module")
    build.add_argument("--policies", required=True, type=Path, help="the directory the OPA sidecar loads")
    build.add_argument("--out", required=True, type=Path, help="the bundle to write (.tar.gz)")
    build.add_argument("--opa", help="the opa binary (default: opa on PATH, else ig-infra's)")
    cli_breakglass.add_commands(commands)
    args = parser.parse_args(argv)
    if args.command in cli_breakglass.COMMANDS:
        return cli_breakglass.run(args)
    if args.command == "wasm-build":
        try:
            revision = build_wasm_bundle(args.policies, args.out, opa=find_opa(args.opa))
        except (CandidateError, RuntimeError) as error:
            print(f"ig-policy wasm-build: {error}", file=sys.stderr)
            return 2
        print(f"{args.out}: revision {revision}")
        return 0
    if args.command == "replay":
        return replay.run(args)
    if args.command == "keygen":
        try:
            written = write_decision_log_keys(args.out)
        except FileExistsError as error:
            print(f"ig-policy keygen: {error.filename} exists; keys are never overwritten", file=sys.stderr)
            return 2
        for name, path in written.items():
            print(f"{name}: {path}")
        return 0
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
