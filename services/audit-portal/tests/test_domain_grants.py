"""Access grants (domain/grants.py): what a grant admits, when, and which requests are refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from ig_portal.domain.grants import Access, Grant, GrantRefused, check_request, decide

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
ME = "auditor@alpha.example"


def grant(release: str = "v1", auditor: str = ME, start: timedelta = -HOUR, end: timedelta = HOUR,
          nda: str = "", accepted: bool = False, revoked: bool = False, id_: str = "g_1") -> Grant:
    return Grant(id_, "alpha", release, auditor, NOW + start, NOW + end, nda, "admin@alpha.example", revoked,
                 NOW - HOUR if accepted else None)


@pytest.mark.parametrize(("grants", "is_admin", "expected"), [
    ([], False, Access.OPEN),  # no grant governs the release: open to the tenant's auditors, as before
    ([grant(release="v2")], False, Access.OPEN),  # a grant of another release does not govern this one
    ([grant()], False, Access.GRANTED),
    ([grant(start=HOUR, end=2 * HOUR)], False, Access.HIDDEN),  # not yet
    ([grant(start=-2 * HOUR, end=-HOUR)], False, Access.HIDDEN),  # expired
    ([grant(start=timedelta(0))], False, Access.GRANTED),  # the window includes its start ...
    ([grant(end=timedelta(0))], False, Access.HIDDEN),  # ... and excludes its end
    ([grant(auditor="other@alpha.example")], False, Access.HIDDEN),  # governed, but not for me
    ([grant(revoked=True)], False, Access.OPEN),  # only revoked grants: governed by nothing
    ([grant(revoked=True), grant(auditor="other@alpha.example", id_="g_2")], False, Access.HIDDEN),
    ([grant(nda="keep it secret")], False, Access.NDA_PENDING),
    ([grant(nda="keep it secret", accepted=True)], False, Access.GRANTED),
    ([grant(nda="x"), grant(id_="g_2")], False, Access.GRANTED),  # another current grant without an NDA
    ([grant(auditor="other@alpha.example")], True, Access.OPEN),  # admins see every release
])
def test_what_a_grant_admits(grants: list[Grant], is_admin: bool, expected: Access) -> None:
    assert decide(grants, release="v1", auditor=ME, is_admin=is_admin, now=NOW).access is expected


def test_the_auditor_is_matched_without_regard_to_case() -> None:
    assert decide([grant()], release="v1", auditor="Auditor@Alpha.example", is_admin=False, now=NOW).access \
        is Access.GRANTED


def test_the_admitting_grant_is_named() -> None:
    found = decide([grant(end=HOUR, id_="g_a"), grant(end=3 * HOUR, id_="g_b")], release="v1", auditor=ME,
                   is_admin=False, now=NOW)
    assert found.grant is not None and found.grant.id == "g_b"
    assert "g_b" in found.grant.describe() and "admin@alpha.example" in found.grant.describe()


@pytest.mark.parametrize(("auditor", "start", "end", "nda", "field"), [
    ("not-an-email", NOW, NOW + HOUR, "", "auditor"),
    ("a@b.example\nx", NOW, NOW + HOUR, "", "auditor"),  # matched whole
    (ME, NOW, NOW, "", "valid_until"),
    (ME, NOW, NOW - HOUR, "", "valid_until"),
    (ME, NOW, NOW + timedelta(days=400), "", "valid_until"),
    (ME, NOW.replace(tzinfo=None), NOW + HOUR, "", "valid_from"),
    (ME, NOW, NOW + HOUR, "x" * 20_001, "nda_text"),
])
def test_bad_grant_requests_are_refused_naming_the_field(auditor: str, start: datetime, end: datetime, nda: str,
                                                         field: str) -> None:
    with pytest.raises(GrantRefused, match=field):
        check_request(auditor=auditor, valid_from=start, valid_until=end, nda_text=nda)


def test_a_good_request_gives_the_normalised_auditor() -> None:
    assert check_request(auditor=" Auditor@Alpha.Example ", valid_from=NOW, valid_until=NOW + HOUR,
                         nda_text="") == "auditor@alpha.example"
