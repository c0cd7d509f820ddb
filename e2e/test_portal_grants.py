"""Issue #24 item 4, in the browser: an admin grants an auditor time-boxed access to a release behind an NDA; the
auditor accepts it once (ledgered with time and address), downloads under the grant (the watermark names it), and
outside the window — or once revoked — sees nothing of the release: every page, API call, link and kit is 404.

Its own database (grants live in the portal's schema and would govern the shared stack's v1.2.1 for other tests).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services" / "audit-portal" / "testing"))
from portal_browser import CHROMIUM, chromium, shot, sign_in
from portal_stack import RELEASE, USERS, Process, Stack, ledger_access_entries, readable_access, running_stack

pytestmark = pytest.mark.e2e
AUDITOR = USERS["alpha-auditor"][0]
NDA = "The evidence of v1.2.1 stays between Alpha and its auditors."


@pytest.fixture(scope="module")
def stack(infra: Any, kafka_bootstrap: str) -> Iterator[Stack]:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is not installed (apt-get install -y chromium)")
    database = infra.new_database("ig_portal_grants")
    try:
        with running_stack(database, kafka_bootstrap) as running:
            yield running
    finally:
        infra.drop_database(database)


@pytest.fixture(scope="module")
def portal(stack: Stack) -> Iterator[tuple[Process, str]]:
    # catalog_cache_seconds=0: grants are read on every request, so a change counts at once here
    process, url = stack.portal("portal-grants", rate_requests_per_minute="100000",
                                rate_downloads_per_minute="100000", catalog_cache_seconds="0")
    yield process, url
    process.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


def local(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def grant(page: Any, portal: str, *, start: timedelta, end: timedelta, nda: str = "") -> str:
    """The admin fills in the form; returns the new grant's id (the newest row)."""
    page.goto(f"{portal}/admin/grants")
    now = datetime.now(UTC)
    page.select_option("select[name=release]", RELEASE)
    page.fill("input[name=auditor]", AUDITOR)
    page.fill("input[name=valid_from]", local(now + start))
    page.fill("input[name=valid_until]", local(now + end))
    page.fill("textarea[name=nda_text]", nda)
    with page.expect_navigation():
        page.click("#new-grant button[type=submit]")
    assert page.url == f"{portal}/admin/grants"
    return str(page.locator("#grants tr[data-grant]").first.get_attribute("data-grant"))


def csrf_of(page: Any) -> str:
    return str(page.locator("input[name=csrf]").first.get_attribute("value"))


def accesses(stack: Stack) -> list[dict[str, Any]]:
    return [json.loads(e.payload) for e in ledger_access_entries(stack.evidence_grpc) if readable_access(e.payload)]


def everything_of_the_release(page: Any, portal: str, artifact_id: str, link: str) -> dict[str, int]:
    """The status of every way to reach the release: pages, API, an earlier download link, manifest, kit."""
    request = page.request
    return {"page": page.goto(f"{portal}/releases/{RELEASE}").status,
            "artifact page": page.goto(f"{portal}/releases/{RELEASE}/artifacts/{artifact_id}").status,
            "artifacts": request.get(f"{portal}/audit/artifacts?release={RELEASE}").status,
            "link": request.get(f"{portal}/audit/download/{artifact_id}").status,
            "download": request.get(link).status,
            "manifest": request.get(f"{portal}/audit/manifest/{RELEASE}/manifest.json").status,
            "kit": request.get(f"{portal}/audit/kit/{RELEASE}").status}


def test_a_grant_with_an_nda_accepted_once_then_nothing_outside_the_window(
        stack: Stack, portal: tuple[Process, str], browser: Any) -> None:
    process, url = portal
    admin = sign_in(browser, url, "alpha-admin", start="/admin/grants")
    # A state change without the session's CSRF token is refused.
    forged = admin.request.post(f"{url}/admin/grants", form={
        "csrf": "guess", "release": RELEASE, "auditor": AUDITOR, "valid_from": "2026-01-01T00:00:00",
        "valid_until": "2027-01-01T00:00:00"})
    assert forged.status == 403
    assert admin.locator("#grants tr[data-grant]").count() == 0
    # A window that ends before it starts is refused naming the field.
    admin.goto(f"{url}/admin/grants")
    now = datetime.now(UTC)
    admin.select_option("select[name=release]", RELEASE)
    admin.fill("input[name=auditor]", AUDITOR)
    admin.fill("input[name=valid_from]", local(now))
    admin.fill("input[name=valid_until]", local(now - timedelta(hours=1)))
    with admin.expect_navigation():
        admin.click("#new-grant button[type=submit]")
    assert "valid_until" in admin.locator("#grant-error").inner_text()

    current = grant(admin, url, start=-timedelta(minutes=5), end=timedelta(hours=1), nda=NDA)
    assert admin.locator(f'tr[data-grant="{current}"] td.state').inner_text() == "active"
    shot(admin, "20-grants-admin")

    # The auditor: the release page leads to the NDA first; the API refuses until it is accepted.
    auditor = sign_in(browser, url, "alpha-auditor", start=f"/releases/{RELEASE}",
                      lands=f"/releases/{RELEASE}/nda")
    assert NDA in auditor.locator("#nda-text").inner_text()
    assert auditor.request.get(f"{url}/audit/artifacts?release={RELEASE}").status == 403
    shot(auditor, "21-nda")
    before = len(accesses(stack))
    auditor.click("#accept-nda button[type=submit]")
    auditor.wait_for_url(f"{url}/releases/{RELEASE}")
    csrf = csrf_of(auditor)
    again = auditor.request.post(f"{url}/releases/{RELEASE}/nda", form={"csrf": csrf}, max_redirects=0)
    assert again.status == 303  # accepted already: nothing more is recorded
    accepted = [e for e in accesses(stack)[before:] if e["action"] == "accept"]
    assert len(accepted) == 1, accepted
    assert accepted[0]["object"] == f"nda:{current}@127.0.0.1" and accepted[0]["user"] and accepted[0]["at"]
    admin.goto(f"{url}/admin/grants")
    assert "accepted" in admin.locator(f'tr[data-grant="{current}"]').inner_text()

    # Under the grant: a download's watermark names the requester and the grant.
    listed = auditor.request.get(f"{url}/audit/artifacts?release={RELEASE}").json()["artifacts"]
    csv = next(a for a in listed if a["name"] == "slo-summary.csv")
    link = auditor.request.get(f"{url}/audit/download/{csv['id']}").json()["url"]
    header = auditor.request.get(f"{url}{link}" if link.startswith("/") else link).body().split(b"\n", 1)[0]
    assert AUDITOR.encode() in header and f"under grant {current}".encode() in header, header
    link = f"{url}{link}" if link.startswith("/") else link
    assert set(everything_of_the_release(auditor, url, csv["id"], link).values()) == {200}

    # Revoked: the remaining grants are a future and an expired window; the release is gone for the auditor.
    grant(admin, url, start=timedelta(hours=1), end=timedelta(hours=2))
    grant(admin, url, start=-timedelta(hours=2), end=-timedelta(hours=1))
    with admin.expect_navigation():
        admin.locator(f'tr[data-grant="{current}"] button').click()
    outside = everything_of_the_release(auditor, url, csv["id"], link)
    assert set(outside.values()) == {404}, outside
    states = sorted(admin.locator("#grants td.state").all_inner_texts())
    assert states == ["expired", "not yet", "revoked"], states
    shot(admin, "22-grants-windows")
    auditor.goto(f"{url}/")
    assert auditor.locator("#empty").is_visible()  # not even listed
    shot(auditor, "23-outside-the-window")
    # An admin still sees it.
    assert admin.goto(f"{url}/releases/{RELEASE}").status == 200
    # Another tenant's admin can neither revoke alpha's grants nor grant access to alpha's release.
    other = sign_in(browser, url, "beta-admin", start="/admin/grants")
    assert other.locator("#grants tr[data-grant]").count() == 0
    beta_csrf = csrf_of(other)
    admin.goto(f"{url}/admin/grants")
    remaining = admin.locator("#grants tr[data-grant]").first.get_attribute("data-grant")
    assert other.request.post(f"{url}/admin/grants/{remaining}/revoke", form={"csrf": beta_csrf}).status == 404
    assert other.request.post(f"{url}/admin/grants", form={
        "csrf": beta_csrf, "release": RELEASE, "auditor": AUDITOR, "valid_from": "2026-01-01T00:00:00",
        "valid_until": "2027-01-01T00:00:00"}).status == 404
    admin.goto(f"{url}/admin/grants")
    assert "revoked" not in admin.locator(f'tr[data-grant="{remaining}"]').inner_text()
    # An auditor may not manage grants at all.
    assert auditor.goto(f"{url}/admin/grants").status == 403
    other.context.close()
    assert process.popen.poll() is None
    auditor.context.close()
    admin.context.close()
