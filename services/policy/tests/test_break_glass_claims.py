"""The claims of a grant whose signature verified (pure: ig_policy.domain.breakglass): each malformed or mismatched
claim is refused naming the check, and a good grant yields exactly the facts the Rego is handed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ig_policy.domain.breakglass import Approver, Rejection, TenantTrust, VerifiedGrant, check_claims, parse_scope
from ig_policy.domain.model import Actor, Context, DecisionRequest, Resource

NOW = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
CAROL = Approver("carol", "ab" * 32, b"")
TRUST = TenantTrust(30, (CAROL,))
REQUEST = DecisionRequest(Actor("u-alice", "alpha", ("oncall",)),
                          Resource("case", "case-1", "alpha", "", "region-a", "internal"), "read",
                          Context(NOW, "corp", "high", 10, "mfa", "region-a"))
GOOD: dict[str, Any] = {
    "iss": "carol", "sub": "u-alice", "tenant": "alpha", "justification": "P1 incident INC-4711", "jti": "g-1",
    "scope": {"resource_type": "case", "resource_id": "*", "action": "read", "classification": "internal"},
    "iat": int((NOW - timedelta(minutes=1)).timestamp()), "exp": int((NOW + timedelta(minutes=14)).timestamp()),
}


def test_good_claims_become_the_facts_the_rego_sees() -> None:
    verified = check_claims(GOOD, CAROL, TRUST, REQUEST, NOW)
    assert isinstance(verified, VerifiedGrant)
    assert verified.facts() == {
        "approver": "carol", "approver_key_id": "ab" * 32, "tenant": "alpha", "scope": GOOD["scope"],
        "justification": "P1 incident INC-4711", "jti": "g-1", "issued_at": "2026-01-10T11:59:00Z",
        "expires_at": "2026-01-10T12:14:00Z",
    }


@pytest.mark.parametrize(("changes", "check", "says"), [
    ({"iat": "yesterday"}, "malformed", "iat and exp"),
    ({"exp": True}, "malformed", "iat and exp"),
    ({"exp": 10**20}, "malformed", "iat and exp"),
    ({"scope": "everything"}, "malformed", "scope must name"),
    ({"scope": {"resource_type": "case", "resource_id": "*", "action": "read"}}, "malformed", "scope must name"),
    ({"justification": ""}, "malformed", "justification"),
    ({"justification": "x" * 1025}, "malformed", "justification"),
    ({"jti": 7}, "malformed", "jti"),
    ({"iss": "dave"}, "issuer", "names approver 'dave'"),
    ({"tenant": "beta"}, "tenant", "for tenant 'beta'"),
    ({"sub": "u-bob"}, "subject", "another subject"),
    ({"scope": {**GOOD["scope"], "action": "export"}}, "scope", "scope (case '*', export, internal) does not cover"),
    ({"scope": {**GOOD["scope"], "resource_type": "file"}}, "scope", "does not cover this request"),
    ({"scope": {**GOOD["scope"], "resource_id": "case-2"}}, "scope", "does not cover this request"),
    ({"scope": {**GOOD["scope"], "classification": "restricted"}}, "scope", "does not cover this request"),
    ({"exp": GOOD["iat"]}, "malformed", "exp must be after iat"),
    ({"exp": GOOD["iat"] + 30 * 60 + 1}, "lifetime", "at most '30' minutes"),
    ({"iat": int((NOW + timedelta(seconds=61)).timestamp())}, "not_yet_valid", "after the server's time"),
    ({"exp": int(NOW.timestamp())}, "expired", "expired at '2026-01-10T12:00:00Z'"),
])
def test_each_bad_claim_is_refused_naming_the_check(changes: dict[str, Any], check: str, says: str) -> None:
    refused = check_claims({**GOOD, **changes}, CAROL, TRUST, REQUEST, NOW)
    assert isinstance(refused, Rejection) and refused.check == check and says in refused.message, refused


def test_the_edges_that_still_pass() -> None:
    at_the_maximum = {**GOOD, "exp": GOOD["iat"] + 30 * 60}
    assert isinstance(check_claims(at_the_maximum, CAROL, TRUST, REQUEST, NOW), VerifiedGrant)
    issued_within_the_leeway = {**GOOD, "iat": int((NOW + timedelta(seconds=60)).timestamp())}
    assert isinstance(check_claims(issued_within_the_leeway, CAROL, TRUST, REQUEST, NOW), VerifiedGrant)


@pytest.mark.parametrize(("text", "says"), [
    ("resource_type=case,resource_id=*,action=read", "classification missing"),
    ("resource_type=case,resource_type=file,resource_id=*,action=read,classification=*", "given twice"),
    ("resource_type=case,resource_id=,action=read,classification=*", "is not one of"),
    ("kind=case", "is not one of"),
])
def test_a_scope_names_every_field(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_scope(text)
    assert parse_scope(" resource_type=case, resource_id=*, action=read, classification=* ")["resource_id"] == "*"
