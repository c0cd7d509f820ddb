"""The release flow reads the portal's verification panel from the page the portal really renders."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

from ig_portal.api.pages import TEMPLATES
from ig_portal.api.release_panel import Panel
from ig_portal.api.verification import LedgerInclusion, SignatureStatus, Verification
from ig_portal.domain.completeness import CompletenessView
from ig_release.stages.portal import panel_statuses
from starlette.requests import Request


def render(status: SignatureStatus, complete: bool) -> str:
    ledger = LedgerInclusion(7, 12, 3, ()) if status is SignatureStatus.VERIFIES else None
    panel = Panel(Verification(status, "release key", "ab" * 32, (), 3, ledger, datetime.now(UTC)),
                  CompletenessView("c 1", True, (), complete), "", None, None)
    request = Request({"type": "http", "method": "GET", "path": "/releases/v1", "headers": [], "query_string": b""})
    template = TEMPLATES.get_template("release.html")
    return template.render(request=request, panel=panel, principal=SimpleNamespace(is_admin=False, email="a",
                           user="a", tenant="alpha", role=SimpleNamespace(value="auditor")), csrf="",
                           release=SimpleNamespace(name="v1", manifest_sha256="0" * 64, complete=complete),
                           artifacts=[], manifest=None, manifest_files=[], ttl=300, title="t")


def test_a_verified_release_reads_as_verified_anchored_complete() -> None:
    assert panel_statuses(render(SignatureStatus.VERIFIES, True)) == {
        "signature-status": "verifies", "ledger-inclusion": "anchored", "completeness": "complete"}


def test_a_tampered_release_reads_as_not_verifying() -> None:
    assert panel_statuses(render(SignatureStatus.DOES_NOT_VERIFY, True)) == {
        "signature-status": "does_not_verify", "ledger-inclusion": "unknown", "completeness": "complete"}
