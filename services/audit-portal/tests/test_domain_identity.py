"""Claims -> principal: groups give the role, the tenant claim or one tenant group gives the tenant."""

from __future__ import annotations

import pytest
from ig_portal.domain.identity import NotAuthorized, Principal, Role, principal_from_claims


@pytest.mark.parametrize(("claims", "expected"), [
    ({"sub": "u1", "groups": ["tenant:alpha", "role:auditor"], "email": "a@x"},
     Principal("u1", "alpha", Role.AUDITOR, "a@x")),
    ({"sub": "u2", "groups": ["tenant:beta", "role:auditor", "role:admin"]}, Principal("u2", "beta", Role.ADMIN)),
    ({"sub": "u3", "tenant": "gamma", "groups": ["role:auditor"]}, Principal("u3", "gamma", Role.AUDITOR)),
    # An explicit tenant claim wins over groups.
    ({"sub": "u4", "tenant": "alpha", "groups": ["tenant:beta", "role:admin"]}, Principal("u4", "alpha", Role.ADMIN)),
])
def test_principal_from_claims(claims: dict[str, object], expected: Principal) -> None:
    assert principal_from_claims(claims) == expected


@pytest.mark.parametrize(("claims", "reason"), [
    ({"groups": ["tenant:alpha", "role:auditor"]}, "subject"),
    ({"sub": "", "groups": ["tenant:alpha", "role:auditor"]}, "subject"),
    ({"sub": "u", "groups": ["role:auditor"]}, "exactly one tenant"),
    ({"sub": "u", "groups": ["tenant:alpha", "tenant:beta", "role:auditor"]}, "exactly one tenant"),
    ({"sub": "u", "groups": ["tenant:alpha"]}, "no portal role"),
    ({"sub": "u", "groups": ["tenant:alpha", "role:superuser"]}, "no portal role"),
    ({"sub": "u", "groups": ["tenant:../etc", "role:admin"]}, "not a valid tenant"),
    ({"sub": "u", "tenant": "alpha\n", "groups": ["role:admin"]}, "not a valid tenant"),  # fullmatch, not match
    ({"sub": "u", "groups": "tenant:alpha role:admin"}, "exactly one tenant"),
])
def test_ambiguous_or_missing_claims_are_refused(claims: dict[str, object], reason: str) -> None:
    with pytest.raises(NotAuthorized, match=reason):
        principal_from_claims(claims)
