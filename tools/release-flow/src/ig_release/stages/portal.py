"""Portal stage: the demo auditor signs in at Dex (password grant, like any API client) and the portal lists the
release with its artifacts."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx

from ig_release.context import ReleaseContext, StageFailed
from ig_release.settings import DEMO_AUDITOR


def auditor_token(issuer: str) -> str:
    email, password = DEMO_AUDITOR
    reply = httpx.post(f"{issuer}/token", data={"grant_type": "password", "username": email, "password": password,
                                                "scope": "openid email profile groups", "client_id": "audit-api"},
                       timeout=10)
    if reply.status_code != 200:
        raise StageFailed(f"Dex refused the demo auditor's sign-in: {reply.status_code} {reply.text[:200]}")
    return str(reply.json()["id_token"])


PANEL_LINE = re.compile(r'id="(signature-status|ledger-inclusion|completeness)" data-status="([a-z_]+)"')


def panel_statuses(html: str) -> dict[str, str]:
    """The release page's verification panel, line by line (the portal marks each with its status)."""
    return dict(PANEL_LINE.findall(html))


def release_page_verdict(portal: str, headers: dict[str, str], version: str, attempts: int = 10) -> dict[str, str]:
    """What the portal's release page says after verifying the release on its server; a verification still running
    ("not_checked") is waited for."""
    statuses: dict[str, str] = {}
    for _ in range(attempts):
        page = httpx.get(f"{portal}/releases/{version}", headers=headers, timeout=30)
        if page.status_code != 200:
            raise StageFailed(f"GET /releases/{version} answered {page.status_code}: {page.text[:300]}")
        statuses = panel_statuses(page.text)
        if statuses.get("signature-status") != "not_checked":
            break
        time.sleep(2)
    if statuses.get("signature-status") != "verifies":
        raise StageFailed(f"the portal's release page does not show {version} verified: {statuses}")
    return statuses


def run(ctx: ReleaseContext) -> str:
    token = auditor_token(ctx.endpoints.oidc_issuer)
    headers = {"Authorization": f"Bearer {token}"}
    portal = ctx.endpoints.portal_url.rstrip("/")
    releases = httpx.get(f"{portal}/audit/releases", headers=headers, timeout=15)
    if releases.status_code != 200:
        raise StageFailed(f"GET /audit/releases answered {releases.status_code}: {releases.text[:300]}")
    if ctx.version not in releases.text:
        raise StageFailed(f"the portal does not list {ctx.version}: {releases.text[:300]}")
    artifacts = httpx.get(f"{portal}/audit/artifacts", params={"release": ctx.version}, headers=headers, timeout=15)
    if artifacts.status_code != 200:
        raise StageFailed(f"GET /audit/artifacts answered {artifacts.status_code}: {artifacts.text[:300]}")
    body = artifacts.json()
    items = body.get("artifacts", body) if isinstance(body, dict) else body
    ctx.summary["audit portal"] = f"{portal}/ (release page: {portal}/releases/{ctx.version})"
    panel = release_page_verdict(portal, headers, ctx.version)
    from ig_release.auditor import retrieve_and_verify, verify_kit_offline

    offline = retrieve_and_verify(portal, ctx.endpoints.oidc_issuer, ctx.version, Path(ctx.shared["public_key"]),
                                  ctx.stage_dir("auditor"), ctx.logs / "auditor.log", Path(ctx.shared["bundle"]))
    kit = verify_kit_offline(portal, ctx.endpoints.oidc_issuer, ctx.version, Path(ctx.shared["public_key"]),
                             ctx.stage_dir("auditor-kit"), ctx.logs / "auditor.log")
    ctx.summary["auditor's verified copy"] = str(ctx.artifacts / "auditor" / "bundle")
    ctx.summary["auditor's verify kit"] = str(ctx.artifacts / "auditor-kit" / f"evidence-kit-{ctx.version}.tar")
    shown = ", ".join(f"{line} {status}" for line, status in sorted(panel.items()))
    return (f"{portal} lists {ctx.version} ({len(items)} artifacts) for the demo auditor; release page: {shown}; "
            f"{offline}; verify kit: {kit}")
