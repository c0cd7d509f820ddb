"""The acceptance: an auditor retrieves the full evidence of the last release through the browser, without any
backend access, and verifies it offline.

Playwright drives Debian's headless Chromium (/usr/bin/chromium; no browser is downloaded) through Dex's real
login form. Screenshots land in artifacts/portal/. Afterwards the ledger holds exactly one entry per page view
and download performed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services" / "audit-portal" / "testing"))
from portal_browser import CHROMIUM, chromium, shot, sign_in
from portal_stack import RELEASE, USERS, Process, Stack, ledger_access_entries, readable_access, shared_stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(infra: Any, database_url: str, kafka_bootstrap: str) -> Iterator[Stack]:
    if not CHROMIUM.exists():
        # A browser test that cannot start its browser fails: a skip would leave `make test` green untested.
        pytest.fail(f"Debian's chromium is not at {CHROMIUM} (make test installs it: apt-get install -y chromium)")
    yield shared_stack(database_url, kafka_bootstrap)


@pytest.fixture(scope="module")
def portal_process(stack: Stack) -> Iterator[tuple[Process, str]]:
    process, url = stack.portal("portal-browser", rate_requests_per_minute="100000", rate_downloads_per_minute="100000")
    yield process, url
    process.stop()  # not at interpreter exit: by then the session's database is gone


@pytest.fixture(scope="module")
def portal(portal_process: tuple[Process, str]) -> str:
    return portal_process[1]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


def ledger_accesses(stack: Stack) -> list[dict[str, Any]]:
    return [json.loads(e.payload) for e in ledger_access_entries(stack.evidence_grpc) if readable_access(e.payload)]


def download_link(page: Any, link: Any, process: Process) -> Any:
    """Click a download link; a refused download (any non-2xx answer) fails here naming the portal's answer.

    Chromium reports an error answer to a download link as a download that failed ('canceled'), so the answer is
    fetched again to name it. No download event at all means the portal did not answer within the timeout; the
    portal answers every request within IG_REQUEST_DEADLINE_SECONDS (15 s), a 503 past it, so that points at a
    hung portal process, whose log tail is shown."""
    href = link.get_attribute("href")
    try:
        with page.expect_download() as info:
            link.click()
    except Exception as error:
        raise AssertionError(f"no download started for {href}: {error}\nportal log:\n{process.tail()}") from error
    download = info.value
    failure = download.failure()
    if failure is not None:
        answer = page.request.get(href)
        raise AssertionError(f"download of {href} failed ({failure}): portal answered {answer.status} "
                             f"{answer.text()[:300]}")
    return download


def test_auditor_retrieves_and_verifies_the_full_evidence_of_the_release(
        stack: Stack, portal: str, portal_process: tuple[Process, str], browser: Any, tmp_path: Path) -> None:
    before = len(ledger_accesses(stack))
    page = sign_in(browser, portal, "alpha-auditor")
    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies["ig_portal_session"]
    assert session["httpOnly"] and session["secure"] and session["sameSite"] == "Lax"
    assert page.locator("#releases").is_visible()
    shot(page, "01-catalog-alpha-auditor")

    page.click(f"text={RELEASE}")
    page.wait_for_url(f"{portal}/releases/{RELEASE}")
    shot(page, "02-release")
    # The signer shown is the one the evidence service pins for alpha (its configuration), with that key's id.
    pinned = hashlib.sha256(load_pem_public_key((stack.keys / "cosign.pub").read_bytes()).public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).hexdigest()
    signer = page.locator("#pinned-signer").inner_text()
    assert "portal e2e release key" in signer and pinned in signer, signer
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    links = page.locator("a.download, a.manifest-download")
    count = links.count()
    assert count >= 10
    for index in range(count):
        download = download_link(page, links.nth(index), portal_process[0])
        download.save_as(downloads / download.suggested_filename)
        # A person pauses between clicks. Clicked back to back (~0.1 s apart once the portal got faster), Debian's
        # Chromium 156 now and then never sent the next download's request at all (the portal's log shows none),
        # failing 5 of 6 runs here; with this pause 5 of 5 passed.
        page.wait_for_timeout(300)
    page.click("table#artifacts tr:nth-child(2) td a")
    page.wait_for_selector("table#artifact")
    shot(page, "03-artifact")
    views, downloads_done = 3, count  # catalog, release, artifact page; one ledger entry per download

    # Offline, with standard tools: unwrap the watermarks, lay the files out as the bundle, verify.
    originals = tmp_path / "originals"
    unwrap = Path(sys.executable).parent / "ig-portal-unwrap"
    subprocess.run([str(unwrap), "--out", str(originals), *map(str, downloads.iterdir())], check=True,
                   capture_output=True)
    bundle = tmp_path / "bundle"
    # The signed manifest itself came through the portal too (served from the evidence service's stored bundle).
    bundle.mkdir()
    for name in ("manifest.json", "manifest.json.sig", "manifest.sigstore.json"):
        assert (originals / name).exists(), f"{name} was not downloadable from the portal"
        shutil.copy(originals / name, bundle / name)
    assert (originals / "cosign.pub").read_bytes() == (stack.keys / "cosign.pub").read_bytes()  # the pinned key
    manifest = json.loads((bundle / "manifest.json").read_text())
    for artifact in manifest["artifacts"]:
        target = bundle / artifact["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(originals / artifact["name"], target)
    verified = subprocess.run([str(Path(sys.executable).parent / "ig-evidence"), "verify", str(bundle), "--key",
                               str(stack.keys / "cosign.pub")], capture_output=True, text=True)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"release {RELEASE}" in verified.stdout

    # One byte changed in one downloaded artifact and the verification names it.
    first = manifest["artifacts"][0]
    target = bundle / first["path"]
    target.write_bytes(target.read_bytes() + b" ")
    tampered = subprocess.run([str(Path(sys.executable).parent / "ig-evidence"), "verify", str(bundle), "--key",
                               str(stack.keys / "cosign.pub")], capture_output=True, text=True)
    assert tampered.returncode != 0 and first["name"] in tampered.stdout + tampered.stderr

    entries = ledger_accesses(stack)[before:]
    mine = [e for e in entries if e["tenant"] == "alpha"]
    assert [e["action"] for e in mine].count("view") == views
    assert [e["action"] for e in mine].count("download") == downloads_done
    assert len(mine) == views + downloads_done
    assert len({e["download_id"] for e in mine if e["action"] == "download"}) == downloads_done

    # Sign out: the POST carries the session's CSRF token; afterwards the session is gone server-side.
    page.goto(f"{portal}/")
    page.click("button[type=submit]")
    page.wait_for_url(f"{portal}/signed-out")
    shot(page, "04-signed-out")
    page.goto(f"{portal}/")
    assert "/dex/auth" in page.url
    page.context.close()


def test_other_tenant_sees_an_empty_catalog_and_404s(stack: Stack, portal: str, browser: Any) -> None:
    alpha = ledger_accesses(stack)
    artifact_objects = [e["object"] for e in alpha if e["object"].startswith("artifact:")]
    assert artifact_objects, "run after the auditor test: it needs alpha's artifact ids"
    page = sign_in(browser, portal, "beta-auditor")
    assert page.locator("#empty").is_visible()
    shot(page, "05-catalog-beta-auditor")
    for path in (f"/releases/{RELEASE}", f"/releases/{RELEASE}/artifacts/{artifact_objects[0].split(':', 1)[1]}",
                 "/releases/v9.9.9"):
        response = page.goto(f"{portal}{path}")
        assert response is not None and response.status == 404, path
    # Access logs are admin-only: an auditor gets the same refusal whether or not the release exists.
    assert page.goto(f"{portal}/releases/{RELEASE}/access-log").status == \
        page.goto(f"{portal}/releases/v9.9.9/access-log").status == 403
    shot(page, "06-beta-404")
    page.context.close()


def test_admin_sees_the_access_log_and_a_cross_site_logout_is_refused(stack: Stack, portal: str,
                                                                      browser: Any) -> None:
    page = sign_in(browser, portal, "alpha-admin", start=f"/releases/{RELEASE}/access-log")
    rows = page.locator("table#access-log tr")
    assert rows.count() > 1
    assert page.locator("table#access-log").inner_text().count("auditor") >= 1 or rows.count() > 5
    shot(page, "07-access-log-admin")
    # A forged logout without the session's CSRF token is refused and the session survives.
    refused = page.request.post(f"{portal}/logout", form={"csrf": "guess"})
    assert refused.status == 403
    assert page.goto(f"{portal}/").status == 200 and "/dex/auth" not in page.url
    page.context.close()


def test_sign_in_begun_at_127_0_0_1_as_the_readme_said_finishes_at_the_public_url(portal: str, browser: Any) -> None:
    """Issue #24 item 1: Dex (pinned) sends the browser back to the public URL (localhost); a sign-in begun at
    127.0.0.1 used to end in '400 sign-in state missing' because the state cookie lived on the other host. The
    portal now moves the sign-in to its public URL before it begins."""
    loopback = portal.replace("://localhost:", "://127.0.0.1:")
    assert loopback != portal
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{loopback}/releases/{RELEASE}")
    assert "/dex/auth" in page.url, page.url
    email, password = USERS["alpha-auditor"]
    page.fill("input[name=login]", email)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{portal}/releases/{RELEASE}")
    assert "sign-in state missing" not in page.content()
    assert page.locator(f"text={RELEASE}").first.is_visible()
    shot(page, "08-signed-in-from-127.0.0.1")
    context.close()
