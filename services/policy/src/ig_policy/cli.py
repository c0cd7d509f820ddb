"""``ig-policy``: the policy service's operator commands.

``replay``: a candidate policy against logged decisions. ``keygen --out DIR``: a new decision-log pepper and replay
key pair (``pepper`` and ``input-key.pub`` for the service, ``replay.key`` for whoever replays). ``approver-key`` and
``break-glass``: a break-glass approver's key pair and the grant it signs (ig_policy.cli_breakglass)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ig_policy import cli_breakglass, replay
from ig_policy.protection_keys import write_decision_log_keys


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ig-policy", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    replay.add_arguments(commands.add_parser(
        "replay", help="re-evaluate logged decisions against a candidate policy and report what would change"))
    keygen = commands.add_parser("keygen", help="write a new decision-log pepper and replay key pair")
    keygen.add_argument("--out", required=True, type=Path, help="directory for pepper, input-key.pub, replay.key")
    cli_breakglass.add_commands(commands)
    args = parser.parse_args(argv)
    if args.command in cli_breakglass.COMMANDS:
        return cli_breakglass.run(args)
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
