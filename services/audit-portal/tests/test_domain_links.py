"""Signed download links: the one issued verifies; any change, another user, or expiry is refused."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ig_portal.domain import links

SECRET = b"k" * 32
GRANT = links.DownloadGrant("art_1", "alice", "alpha", 1_000, "dl_" + "0" * 32)
text = st.text(min_size=1, max_size=40)


def test_issued_link_verifies_until_expiry() -> None:
    signature = links.sign(SECRET, GRANT)
    assert links.verify(SECRET, GRANT, signature, now=999) == GRANT
    with pytest.raises(links.LinkRefused, match="expired"):
        links.verify(SECRET, GRANT, signature, now=1_000)


@given(field=st.sampled_from(["artifact_id", "user", "tenant", "download_id"]), value=text)
def test_any_changed_field_is_refused(field: str, value: str) -> None:
    signature = links.sign(SECRET, GRANT)
    changed = dataclasses.replace(GRANT, **{field: value})
    if changed == GRANT:
        return
    with pytest.raises(links.LinkRefused):
        links.verify(SECRET, changed, signature, now=0)


@given(expiry=st.integers(min_value=1001, max_value=2**40))
def test_extending_the_expiry_is_refused(expiry: int) -> None:
    with pytest.raises(links.LinkRefused):
        links.verify(SECRET, dataclasses.replace(GRANT, expires_at=expiry), links.sign(SECRET, GRANT), now=0)


def test_other_secret_or_flipped_signature_is_refused() -> None:
    signature = links.sign(SECRET, GRANT)
    with pytest.raises(links.LinkRefused):
        links.verify(b"x" * 32, GRANT, signature, now=0)
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    with pytest.raises(links.LinkRefused):
        links.verify(SECRET, GRANT, flipped, now=0)


def test_field_boundaries_cannot_be_shifted() -> None:
    a = links.DownloadGrant("ab", "c", "t", 5, "d")
    b = links.DownloadGrant("a", "bc", "t", 5, "d")
    assert links.sign(SECRET, a) != links.sign(SECRET, b)


@pytest.mark.parametrize(("requested", "admin", "expected"), [
    (None, False, 300), (None, True, 300), (60, True, 60), (3600, True, 3600)])
def test_lifetime_default_and_admin_choice(requested: int | None, admin: bool, expected: int) -> None:
    assert links.lifetime(requested, default=300, cap=3600, may_choose=admin) == expected


def test_lifetime_refusals() -> None:
    with pytest.raises(PermissionError):
        links.lifetime(60, default=300, cap=3600, may_choose=False)
    with pytest.raises(ValueError, match="between"):
        links.lifetime(3601, default=300, cap=3600, may_choose=True)
    with pytest.raises(ValueError, match="between"):
        links.lifetime(0, default=300, cap=3600, may_choose=True)
