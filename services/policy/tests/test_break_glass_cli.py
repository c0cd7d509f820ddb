"""`ig-policy approver-key` and `ig-policy break-glass`: the key pair and approvers-file entry an approver makes, and
the grant it issues, which the service's verifier accepts for exactly what was asked."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from ig_policy.breakglass import BreakGlassVerifier, load_approvers
from ig_policy.cli import main
from ig_policy.domain.model import Actor, BreakGlass, Context, DecisionRequest, Resource

SCOPE = "resource_type=case,resource_id=*,action=read,classification=internal"


def _request(token: str, now: datetime) -> DecisionRequest:
    return DecisionRequest(Actor("u-alice", "alpha", ("oncall",)),
                           Resource("case", "case-9", "alpha", "", "region-a", "internal"), "read",
                           Context(now, "corp", "high", 10, "mfa", "region-a", BreakGlass(grant=token)))


def _approver_key(tmp_path: Path, *extra: str) -> int:
    return main(["approver-key", "--out", str(tmp_path / "carol.key"), "--name", "carol", *extra])


def test_an_approver_key_and_its_grant_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _approver_key(tmp_path, "--tenant", "alpha", "--max-grant-minutes", "20") == 0
    assert stat.S_IMODE(os.stat(tmp_path / "carol.key").st_mode) == 0o600
    (tmp_path / "approvers.yaml").write_text(capsys.readouterr().out)
    trust = load_approvers(tmp_path / "approvers.yaml")  # the printed entry is a working approvers file
    assert trust["alpha"].max_grant_minutes == 20 and trust["alpha"].approvers[0].name == "carol"

    assert main(["break-glass", "--approver-key", str(tmp_path / "carol.key"), "--subject", "u-alice", "--tenant",
                 "alpha", "--scope", SCOPE, "--justification", "P1 incident INC-4711 customer outage",
                 "--ttl", "15m"]) == 0
    token = capsys.readouterr().out.strip()
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 15 * 60 and claims["iss"] == "carol" and claims["sub"] == "u-alice"
    checked = BreakGlassVerifier(trust).check(_request(token, datetime.now(UTC)), datetime.now(UTC))
    assert checked is not None and checked.check == "verified", checked
    assert checked.grant is not None and checked.grant.scope["resource_id"] == "*"
    later = datetime.now(UTC) + timedelta(minutes=16)
    expired = BreakGlassVerifier(trust).check(_request(token, later), later)
    assert expired is not None and expired.check == "expired"


@pytest.mark.parametrize(("arguments", "says"), [
    (["--scope", "resource_type=case"], "--scope: scope: resource_id, action, classification missing"),
    (["--scope", SCOPE + ",colour=red"], "is not one of"),
    (["--ttl", "2d"], "--ttl: '2d' is not a duration"),
    (["--ttl", "25h"], "a grant lasts 1 minute to 24 hours"),
    (["--justification", " "], "--justification"),
    (["--approver-key", "/nonexistent/carol.key"], "--approver-key"),
])
def test_bad_arguments_are_refused_naming_them(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               arguments: list[str], says: str) -> None:
    assert _approver_key(tmp_path) == 0
    base = {"--approver-key": str(tmp_path / "carol.key"), "--subject": "u-alice", "--tenant": "alpha",
            "--scope": SCOPE, "--justification": "P1 incident INC-4711 customer outage"}
    base.update(dict(zip(arguments[::2], arguments[1::2], strict=True)))
    capsys.readouterr()
    assert main(["break-glass", *[part for item in base.items() for part in item]]) == 2
    captured = capsys.readouterr()
    assert says in captured.err and captured.out == "", captured.err


def test_an_approver_key_is_never_overwritten(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _approver_key(tmp_path) == 0
    before = (tmp_path / "carol.key").read_bytes()
    assert _approver_key(tmp_path) == 2
    assert "never overwritten" in capsys.readouterr().err
    assert (tmp_path / "carol.key").read_bytes() == before
