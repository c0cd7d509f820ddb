"""The browser side of the portal's e2e tests: Debian's Chromium under Playwright, signing in through Dex's form."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from portal_stack import REPO, USERS

CHROMIUM = Path(os.environ.get("IG_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
SHOTS = Path(os.environ.get("ARTIFACTS", REPO / "artifacts")) / "portal"


@contextmanager
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def sign_in(browser: Any, portal: str, user: str, start: str = "/", lands: str | None = None) -> Any:
    """A fresh browser context signed in as ``user`` (Dex's LDAP form, reached through the portal's PKCE
    redirect from ``start``); the page, once back on the portal at ``lands`` (default: ``start``)."""
    page = browser.new_context(accept_downloads=True).new_page()
    page.goto(f"{portal}{start}")
    assert "/dex/auth" in page.url, page.url
    email, password = USERS[user]
    page.fill("input[name=login]", email)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{portal}{lands or start}")
    return page


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
