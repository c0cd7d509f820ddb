"""Access governance: time-boxed grants per release and auditor, an NDA accepted once, enforced wherever the
catalog is reached (the evidence catalog asks this gate for every release it hands out).

Enforcement sits in ``EvidenceCatalog.release``/``releases``, which every page, API call and download goes
through, so there is no route that can forget it: a governed release an auditor holds no current grant for is
the same 404 as a release that does not exist; one whose grant's NDA is not accepted yet answers 403 (pages send
the browser to the NDA). The grant that admitted a download is named in its watermark
(``grant_context.admitted_grant``).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ig_portal.api.catalog import lookup, valid_release
from ig_portal.api.grant_context import admit_through
from ig_portal.api.page_docs import FORM_RESPONSES, PAGE_RESPONSES
from ig_portal.api.pages import Pages
from ig_portal.clients.evidence import NdaRequired, NotFound, Recent, ReleaseView
from ig_portal.domain.access import Action
from ig_portal.domain.grants import GRANT_ID, Access, Decision, Grant, GrantRefused, check_request, decide
from ig_portal.domain.identity import Principal
from ig_portal.store.grants import GrantStore
from ig_portal.store.sessions import Session


class Governance:
    """The catalog's gate. The tenant's grants are read once per ``cache_seconds`` (a revocation or a new grant
    counts within that); each decision is taken afresh against the current time."""

    def __init__(self, grants: GrantStore, cache_seconds: float) -> None:
        self.grants = grants
        self._recent: Recent[str, list[Grant]] = Recent(cache_seconds)

    async def of_tenant(self, tenant: str) -> list[Grant]:
        return await self._recent.get(tenant, lambda: self.grants.of_tenant(tenant))

    async def decision(self, user: Principal, release: str) -> Decision:
        return decide(await self.of_tenant(user.tenant), release=release, auditor=user.email or user.user,
                      is_admin=user.is_admin, now=datetime.now(UTC))

    async def visible(self, user: Principal, releases: list[ReleaseView]) -> list[ReleaseView]:
        if user.is_admin:
            return releases
        grants, now = await self.of_tenant(user.tenant), datetime.now(UTC)
        return [r for r in releases if decide(grants, release=r.name, auditor=user.email or user.user,
                                              is_admin=False, now=now).visible]

    async def admit(self, user: Principal, release: str) -> None:
        """NotFound when the release is hidden from the caller, NdaRequired before its NDA is accepted."""
        found = await self.decision(user, release)
        if found.access is Access.HIDDEN:
            raise NotFound(release)
        if found.access is Access.NDA_PENDING:
            raise NdaRequired(release)
        admit_through(found.grant)

    def forget(self, tenant: str) -> None:
        self._recent.drop(tenant)


def _utc(value: str, field: str) -> datetime:
    """A datetime-local form value (no zone: UTC, as the form says) or an ISO 8601 time with its zone."""
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError as error:
        raise GrantRefused(f"{field}: not a date and time") from error
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass
class GovernancePages:
    """The admin's grants page and the auditor's NDA page; every change a POST with the session's CSRF token."""

    pages: Pages
    governance: Governance

    def router(self) -> APIRouter:
        router = APIRouter(tags=["grants"], responses=PAGE_RESPONSES)
        pages = self.pages
        governance = self.governance
        api = pages.api

        def require_csrf(session: Session | None, csrf: str) -> Session:
            if session is None or not secrets.compare_digest(csrf, session.csrf_token):
                raise HTTPException(403, "refused: missing or wrong CSRF token")
            return session

        async def admin(request: Request) -> tuple[Principal, Session | None]:
            principal, session = await pages.visitor(request)
            if not principal.is_admin:
                raise HTTPException(403, "grants are for admins of the tenant")
            return principal, session

        async def render_grants(request: Request, principal: Principal, session: Session | None,
                                error: str = "", status: int = 200) -> Response:
            grants = await governance.grants.of_tenant(principal.tenant)
            releases = await lookup(api.catalog.releases(principal))
            response: Response = pages.render(
                request, "grants.html", principal, session, grants=list(reversed(grants)), releases=releases,
                now=datetime.now(UTC), error=error, title="Access grants")
            response.status_code = status
            return response

        @router.get("/admin/grants", response_class=HTMLResponse)
        async def grants_page(request: Request) -> Response:
            principal, session = await admin(request)
            await api.guard.record(request, principal, Action.VIEW, "grants")
            return await render_grants(request, principal, session)

        @router.post("/admin/grants", responses=FORM_RESPONSES)
        async def create_grant(request: Request, csrf: Annotated[str, Form(max_length=128)] = "",
                               release: Annotated[str, Form(max_length=64)] = "",
                               auditor: Annotated[str, Form(max_length=320)] = "",
                               valid_from: Annotated[str, Form(max_length=40)] = "",
                               valid_until: Annotated[str, Form(max_length=40)] = "",
                               nda_text: Annotated[str, Form(max_length=20_000)] = "") -> Response:
            principal, session = await admin(request)
            require_csrf(session, csrf)
            name = valid_release(release)
            await lookup(api.catalog.release(principal, name))
            try:
                start, end = _utc(valid_from, "valid_from"), _utc(valid_until, "valid_until")
                email = check_request(auditor=auditor, valid_from=start, valid_until=end, nda_text=nda_text.strip())
            except GrantRefused as error:
                return await render_grants(request, principal, session, str(error), status=400)
            grant = await governance.grants.create(tenant=principal.tenant, release=name, auditor=email,
                                                   valid_from=start, valid_until=end, nda_text=nda_text.strip(),
                                                   granted_by=principal.email or principal.user)
            try:
                await api.guard.record(request, principal, Action.GRANT, f"grant:{grant.id}:{email}", release=name)
            except BaseException:
                await governance.grants.delete(principal.tenant, grant.id)  # not ledgered: not granted
                raise
            finally:
                governance.forget(principal.tenant)
            return RedirectResponse("/admin/grants", status_code=303)

        @router.post("/admin/grants/{grant_id}/revoke", responses=FORM_RESPONSES)
        async def revoke_grant(request: Request, grant_id: str,
                               csrf: Annotated[str, Form(max_length=128)] = "") -> Response:
            principal, session = await admin(request)
            require_csrf(session, csrf)
            if not GRANT_ID.fullmatch(grant_id):
                raise HTTPException(404, "no such grant")
            if not await governance.grants.revoke(principal.tenant, grant_id):
                raise HTTPException(404, "no such grant")
            governance.forget(principal.tenant)
            await api.guard.record(request, principal, Action.GRANT, f"revoke:{grant_id}")
            return RedirectResponse("/admin/grants", status_code=303)

        @router.get("/releases/{release}/nda", response_class=HTMLResponse)
        async def nda_page(request: Request, release: str) -> Response:
            principal, session = await pages.visitor(request)
            name = valid_release(release)
            found = await governance.decision(principal, name)
            if found.access is Access.HIDDEN:
                raise HTTPException(404, "no such release or artifact")
            if found.access is not Access.NDA_PENDING or found.grant is None:
                return RedirectResponse(f"/releases/{name}", status_code=303)
            return pages.render(request, "nda.html", principal, session,
                                release=name, grant=found.grant, title=f"NDA for {name}")

        @router.post("/releases/{release}/nda", responses=FORM_RESPONSES)
        async def accept_nda(request: Request, release: str,
                             csrf: Annotated[str, Form(max_length=128)] = "") -> Response:
            principal, session = await pages.visitor(request)
            require_csrf(session, csrf)
            name = valid_release(release)
            found = await governance.decision(principal, name)
            if found.access is Access.HIDDEN:
                raise HTTPException(404, "no such release or artifact")
            if found.access is Access.NDA_PENDING and found.grant is not None:
                address = request.client.host if request.client else "unknown"
                grants = governance.grants
                accepted = await grants.accept_nda(principal.tenant, found.grant.id,
                                                   (principal.email or principal.user).lower(), address)
                if accepted is not None:
                    try:
                        await api.guard.record(request, principal, Action.ACCEPT,
                                               f"nda:{found.grant.id}@{address}", release=name)
                    except BaseException:
                        await grants.undo_accept(principal.tenant, found.grant.id)  # not ledgered: not accepted
                        raise
                governance.forget(principal.tenant)
            return RedirectResponse(f"/releases/{name}", status_code=303)

        return router


__all__ = ["Governance", "GovernancePages"]
