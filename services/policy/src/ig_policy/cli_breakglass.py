"""``ig-policy approver-key`` and ``ig-policy break-glass``: a break-glass approver's key pair, and the grant it signs.

``ig-policy approver-key --out carol.key --name carol --tenant alpha`` writes the key pair and prints its
approvers-file entry; ``ig-policy break-glass --approver-key carol.key --subject u-alice --tenant alpha --scope
resource_type=case,resource_id=*,action=read,classification=internal --justification "..." --ttl 15m`` prints a
signed grant for the request's ``context.break_glass.grant``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from ig_policy.breakglass import (
    MAX_GRANT_MINUTES,
    issue_grant,
    key_id_of,
    load_private_key,
    unverified_claims,
    write_approver_key,
)
from ig_policy.domain.breakglass import MAX_JUSTIFICATION, parse_scope

COMMANDS = ("break-glass", "approver-key")
_DURATION = re.compile(r"^(\d+)\s*([smh]?)$")


class Refused(ValueError):
    """A bad argument: the message names it."""


def parse_ttl(text: str) -> timedelta:
    """``900``, ``900s``, ``15m`` or ``1h``: at least a minute, at most a day (the service caps it per tenant)."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise Refused(f"--ttl: {text!r} is not a duration like 900s, 15m or 1h")
    value, unit = int(match.group(1)), match.group(2) or "s"
    span = timedelta(seconds=value * {"s": 1, "m": 60, "h": 3600}[unit])
    if not timedelta(minutes=1) <= span <= timedelta(minutes=MAX_GRANT_MINUTES):
        raise Refused(f"--ttl: {text!r}: a grant lasts 1 minute to {MAX_GRANT_MINUTES // 60} hours")
    return span


def add_commands(commands: Any) -> None:
    grant = commands.add_parser("break-glass", help="issue a break-glass grant signed with an approver's key")
    grant.add_argument("--approver-key", required=True, type=Path,
                       help="the approver's ECDSA P-256 private key (PEM), as `ig-policy approver-key` writes it")
    grant.add_argument("--approver", default=None, help="the approver's name in the approvers file "
                                                        "(default: the key file's name without .key)")
    grant.add_argument("--subject", required=True, help="the actor id the grant is for")
    grant.add_argument("--tenant", required=True, help="the tenant of both the actor and the resource")
    grant.add_argument("--scope", required=True,
                       help="resource_type=...,resource_id=...,action=...,classification=... (* for any value)")
    grant.add_argument("--justification", required=True, help="why (the tenant's policy asks for a minimum length)")
    grant.add_argument("--ttl", default="15m", help="how long it lasts: 900s, 15m, 1h (default 15m)")
    key = commands.add_parser("approver-key", help="make a break-glass approver's key pair and print its "
                                                   "approvers-file entry")
    key.add_argument("--out", required=True, type=Path,
                     help="where the private key goes (0600); the public key is written beside it as .pub")
    key.add_argument("--name", required=True, help="the approver's name (the grants' iss)")
    key.add_argument("--tenant", dest="tenants", action="append", default=[],
                     help="tenant to print an approvers-file entry for (repeatable)")
    key.add_argument("--max-grant-minutes", type=int, default=30, help="the entry's maxGrantMinutes (default 30)")


def run(args: argparse.Namespace) -> int:
    try:
        if args.command == "break-glass":
            return _break_glass(args)
        return _approver_key(args)
    except Refused as error:
        print(f"ig-policy {args.command}: {error}", file=sys.stderr)
        return 2


def _break_glass(args: argparse.Namespace) -> int:
    try:
        scope = parse_scope(args.scope)
    except ValueError as error:
        raise Refused(f"--scope: {error}") from error
    if not args.justification.strip() or len(args.justification) > MAX_JUSTIFICATION:
        raise Refused(f"--justification: 1 to {MAX_JUSTIFICATION} characters")
    ttl = parse_ttl(args.ttl)
    try:
        key = load_private_key(args.approver_key)
    except (OSError, ValueError) as error:
        raise Refused(f"--approver-key: {error}") from error
    name = args.approver or args.approver_key.name.removesuffix(".key")
    token = issue_grant(key, approver=name, subject=args.subject, tenant=args.tenant, scope=scope,
                        justification=args.justification, ttl=ttl, now=datetime.now(UTC))
    claims = unverified_claims(token)
    until = datetime.fromtimestamp(claims["exp"], UTC).isoformat().replace("+00:00", "Z")
    print(f"grant {claims['jti']} by {name} (key {key_id_of(key.public_key())[:16]}) for {args.subject} in "
          f"{args.tenant}, {json.dumps(scope)}, until {until}", file=sys.stderr)
    print(token)
    return 0


def _approver_key(args: argparse.Namespace) -> int:
    out: Path = args.out
    if out.exists():
        raise Refused(f"--out: {out} exists; an approver key is never overwritten")
    if not 1 <= args.max_grant_minutes <= MAX_GRANT_MINUTES:
        raise Refused(f"--max-grant-minutes: 1 to {MAX_GRANT_MINUTES}")
    entry = {"name": args.name, **write_approver_key(out)}
    print(f"wrote {out} (private, 0600) and {out.with_suffix('.pub')}", file=sys.stderr)
    document = {"tenants": {t: {"maxGrantMinutes": args.max_grant_minutes, "approvers": [entry]}
                            for t in args.tenants or ["<tenant>"]}}
    sys.stdout.write(yaml.safe_dump(document, sort_keys=False))
    return 0
