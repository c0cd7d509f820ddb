"""The verifier remembers which grants' signatures verified (one ES256 check per grant, not per request), and
nothing else: what a grant's claims say is judged again on every request, at that request's server time, and a
grant that failed is checked again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from ig_policy import breakglass
from ig_policy.breakglass import BreakGlassVerifier, issue_grant, key_id_of, load_approvers
from ig_policy.domain.breakglass import GRANT_TYPE
from ig_policy.domain.model import Actor, BreakGlass, Context, DecisionRequest, Resource
from ig_policy.testing import write_approvers_file

SATURDAY = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
SCOPE = {"resource_type": "case", "resource_id": "case-1", "action": "read", "classification": "internal"}
CAROL, MALLORY = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
GRANT = issue_grant(CAROL, approver="carol", subject="u-alice", tenant="alpha", scope=SCOPE,
                    justification="P1 incident INC-4711 customer outage", ttl=timedelta(minutes=15),
                    now=SATURDAY - timedelta(minutes=1))

# Carol's grant re-signed by mallory under carol's key id.
FORGED = jwt.encode(jwt.decode(GRANT, options={"verify_signature": False}), MALLORY, algorithm="ES256",
                    headers={"typ": GRANT_TYPE, "kid": key_id_of(CAROL.public_key())})


def asking(token: str, actor_id: str = "u-alice") -> DecisionRequest:
    return DecisionRequest(
        actor=Actor(actor_id, "alpha", ("oncall",), ("investigation",)),
        resource=Resource("case", "case-1", "alpha", "investigation", "region-a", "internal"),
        action="read",
        context=Context(SATURDAY, "corp", "high", 10, "mfa", "region-a",
                        break_glass=BreakGlass("P1 incident INC-4711 customer outage", None, token)))


@pytest.fixture
def verifier(tmp_path: Path) -> BreakGlassVerifier:
    path = write_approvers_file(tmp_path, max_grant_minutes=30, tenants=("alpha",), approvers={"carol": CAROL})
    return BreakGlassVerifier(load_approvers(path))


@pytest.fixture
def signature_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    checked: list[str] = []
    decode = jwt.decode

    def counting(token: str, *args: Any, **kwargs: Any) -> Any:
        checked.append(token)
        return decode(token, *args, **kwargs)

    monkeypatch.setattr(breakglass.jwt, "decode", counting)
    return checked


def test_a_grant_used_again_is_not_verified_again(verifier: BreakGlassVerifier,
                                                  signature_checks: list[str]) -> None:
    for minute in range(3):
        outcome = verifier.check(asking(GRANT), SATURDAY + timedelta(minutes=minute))
        assert outcome is not None and outcome.check == "verified"
    assert signature_checks == [GRANT]


def test_a_remembered_grant_is_still_judged_at_each_requests_time_and_for_its_subject(
    verifier: BreakGlassVerifier,
) -> None:
    assert verifier.check(asking(GRANT), SATURDAY).check == "verified"  # type: ignore[union-attr]
    later = verifier.check(asking(GRANT), SATURDAY + timedelta(minutes=20))
    assert later is not None and later.check == "expired"
    other = verifier.check(asking(GRANT, actor_id="u-bob"), SATURDAY)
    assert other is not None and other.check == "subject"


def test_a_grant_whose_signature_failed_is_checked_again_and_refused_again(
    verifier: BreakGlassVerifier, signature_checks: list[str],
) -> None:
    for _ in range(2):
        outcome = verifier.check(asking(FORGED), SATURDAY)
        assert outcome is not None and outcome.check == "signature"
    assert signature_checks == [FORGED, FORGED]
