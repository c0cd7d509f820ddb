"""``ig-policy``: the policy service's operator commands.

``ig-policy approver-key --out carol.key --name carol`` makes a break-glass approver's key pair and prints its
approvers-file entry; ``ig-policy break-glass --approver-key carol.key --subject u-alice --tenant alpha --scope
resource_type=case,resource_id=*,action=read,classification=internal --justification "..." --ttl 15m`` prints a
signed grant for the request's ``context.break_glass.grant``.
"""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
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

_DURATION = re.compile(r"^(\d+)\s*([smh]?)$")


def parse_ttl(text: str) -> timedelta:
    """``900``, ``900s``, ``15m`` or ``1h``: at least a minute, at most a day (the service caps it per tenant)."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise click.BadParameter(f"{text!r} is not a duration like 900s, 15m or 1h")
    value, unit = int(match.group(1)), match.group(2) or "s"
    span = timedelta(seconds=value * {"s": 1, "m": 60, "h": 3600}[unit])
    if not timedelta(minutes=1) <= span <= timedelta(minutes=MAX_GRANT_MINUTES):
        raise click.BadParameter(f"{text!r}: a grant lasts 1 minute to {MAX_GRANT_MINUTES // 60} hours")
    return span


@click.group()
def main() -> None:
    """Operator commands of the policy service."""


@main.command("break-glass")
@click.option("--approver-key", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="the approver's ECDSA P-256 private key (PEM), as `ig-policy approver-key` writes it")
@click.option("--approver", default=None,
              help="the approver's name as the approvers file lists it (default: the key file's name without .key)")
@click.option("--subject", required=True, help="the actor id the grant is for")
@click.option("--tenant", required=True, help="the tenant of both the actor and the resource")
@click.option("--scope", "scope_text", required=True,
              help="resource_type=...,resource_id=...,action=...,classification=... (* for any value)")
@click.option("--justification", required=True, help="why (the tenant's policy asks for a minimum length)")
@click.option("--ttl", default="15m", show_default=True, help="how long it lasts: 900s, 15m, 1h")
def break_glass(approver_key: Path, approver: str | None, subject: str, tenant: str, scope_text: str,
                justification: str, ttl: str) -> None:
    """Issue a break-glass grant: a JWS signed with the approver's key, printed on stdout."""
    try:
        scope = parse_scope(scope_text)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--scope") from error
    if not justification.strip() or len(justification) > MAX_JUSTIFICATION:
        raise click.BadParameter(f"1 to {MAX_JUSTIFICATION} characters", param_hint="--justification")
    try:
        key = load_private_key(approver_key)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--approver-key") from error
    name = approver or approver_key.name.removesuffix(".key")
    token = issue_grant(key, approver=name, subject=subject, tenant=tenant, scope=scope,
                        justification=justification, ttl=parse_ttl(ttl), now=datetime.now(UTC))
    claims = unverified_claims(token)
    click.echo(f"grant {claims['jti']} by {name} (key {key_id_of(key.public_key())[:16]}) for {subject} in "
               f"{tenant}, {json.dumps(scope)}, until "
               f"{datetime.fromtimestamp(claims['exp'], UTC).isoformat().replace('+00:00', 'Z')}", err=True)
    click.echo(token)


@main.command("approver-key")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="where the private key goes (0600); the public key is written beside it as .pub")
@click.option("--name", required=True, help="the approver's name (the grants' iss)")
@click.option("--tenant", "tenants", multiple=True, help="tenant(s) to print an approvers-file entry for")
@click.option("--max-grant-minutes", default=30, show_default=True, type=click.IntRange(1, MAX_GRANT_MINUTES))
def approver_key(out: Path, name: str, tenants: tuple[str, ...], max_grant_minutes: int) -> None:
    """Make a break-glass approver's key pair and print its entry for IG_BREAKGLASS_APPROVERS_PATH."""
    if out.exists():
        raise click.BadParameter(f"{out} exists; an approver key is never overwritten", param_hint="--out")
    entry = {"name": name, **write_approver_key(out)}
    click.echo(f"wrote {out} (private, 0600) and {out.with_suffix('.pub')}", err=True)
    document = {"tenants": {t: {"maxGrantMinutes": max_grant_minutes, "approvers": [entry]}
                            for t in tenants or ("<tenant>",)}}
    sys.stdout.write(yaml.safe_dump(document, sort_keys=False))


if __name__ == "__main__":
    main()
