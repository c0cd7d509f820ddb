"""Server-rendered pages (no JavaScript needed): catalog, release, artifact, access log."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from ig_portal.api.audit import AuditApi
from ig_portal.api.catalog import lookup, valid_artifact_id, valid_release
from ig_portal.api.edges import CONTENT_SECURITY_POLICY
from ig_portal.api.guard import new_download_id
from ig_portal.api.page_docs import PAGE_RESPONSES
from ig_portal.api.release_panel import ReleasePanel
from ig_portal.clients.evidence import ManifestFiles, NdaRequired, NotFound, Unavailable
from ig_portal.domain.access import Action
from ig_portal.domain.identity import Principal
from ig_portal.store.sessions import Session

T = TypeVar("T")
TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent.parent / "templates"))
SECURITY_HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY,
                    "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}


class LoginRequired(Exception):
    """A page was asked for without a session: the browser goes to /login and comes back."""

    def __init__(self, return_to: str) -> None:
        self.return_to = return_to


class NdaFirst(Exception):
    """A page of a release whose grant's NDA is not accepted yet: the browser goes to the NDA and comes back."""

    def __init__(self, release: str) -> None:
        self.release = release


async def nda_first(call: Awaitable[T]) -> T:
    try:
        return await call
    except NdaRequired as error:
        raise NdaFirst(error.release) from error


@dataclass
class Pages:
    api: AuditApi
    panel: ReleasePanel | None = None  # the verification panel of the release page

    async def visitor(self, request: Request) -> tuple[Principal, Session | None]:
        principal, session = await self.api.guard.authenticate(request)
        await self.api.guard.admit(request, principal)
        if principal is None:
            raise LoginRequired(request.url.path)
        return principal, session

    def render(self, request: Request, template: str, principal: Principal, session: Session | None,
               **context: Any) -> HTMLResponse:
        context.update(principal=principal, csrf=session.csrf_token if session else "",
                       title=context.get("title", "Audit Portal"))
        response = TEMPLATES.TemplateResponse(request, template, context)
        response.headers.update(SECURITY_HEADERS)
        return response

    async def signed_manifest(self, principal: Principal, release: str) -> ManifestFiles | None:
        """The signed manifest's files and pinned signer, when the evidence service offers them."""
        try:
            return await self.api.catalog.manifest(principal, release)
        except (NotImplementedError, NotFound, Unavailable):
            return None

    def router(self) -> APIRouter:
        router = APIRouter(tags=["pages"], responses=PAGE_RESPONSES)
        guard, catalog, links = self.api.guard, self.api.catalog, self.api.links

        @router.get("/", response_class=HTMLResponse)
        async def home(request: Request) -> Response:
            principal, session = await self.visitor(request)
            releases = await lookup(catalog.releases(principal))
            await guard.record(request, principal, Action.VIEW, "catalog")
            return self.render(request, "catalog.html", principal, session, releases=releases, title="Releases")

        @router.get("/releases/{release}", response_class=HTMLResponse)
        async def release_page(request: Request, release: str) -> Response:
            principal, session = await self.visitor(request)
            name = valid_release(release)
            found = await lookup(nda_first(catalog.release(principal, name)))
            artifacts = await lookup(catalog.artifacts(principal, name))
            signed = [(a, links.issue(principal, a.id, new_download_id())[0]) for a in artifacts]
            manifest = await self.signed_manifest(principal, name)
            panel = await self.panel.build(principal, found, artifacts, manifest) if self.panel else None
            await guard.record(request, principal, Action.VIEW, f"release:{name}", release=name)
            return self.render(request, "release.html", principal, session, release=found, artifacts=signed,
                               manifest=manifest, manifest_files=sorted(manifest.files) if manifest else [],
                               panel=panel, ttl=links.default_ttl, title=f"Release {name}")

        @router.get("/releases/{release}/artifacts/{artifact_id}", response_class=HTMLResponse)
        async def artifact_page(request: Request, release: str, artifact_id: str) -> Response:
            principal, session = await self.visitor(request)
            name, key = valid_release(release), valid_artifact_id(artifact_id)
            artifact = await lookup(nda_first(catalog.artifact(principal, key)))
            if artifact.release != name:
                raise HTTPException(404, "no such release or artifact")
            url, _ = links.issue(principal, key, new_download_id())
            await guard.record(request, principal, Action.VIEW, f"artifact:{key}", release=name)
            return self.render(request, "artifact.html", principal, session, artifact=artifact, url=url,
                               ttl=links.default_ttl, title=artifact.name)

        @router.get("/releases/{release}/access-log", response_class=HTMLResponse)
        async def access_log_page(request: Request, release: str) -> Response:
            principal, session = await self.visitor(request)
            if not principal.is_admin:
                raise HTTPException(403, "access logs are for admins of the tenant")
            name = valid_release(release)
            await lookup(catalog.release(principal, name))
            entries = await self.api.read_log(principal, name)
            await guard.record(request, principal, Action.VIEW, f"access-log:{name}", release=name)
            return self.render(request, "access_log.html", principal, session, release=name, entries=entries,
                               title=f"Access log {name}")

        return router


def nda_redirect(error: NdaFirst) -> RedirectResponse:
    return RedirectResponse(f"/releases/{quote(error.release)}/nda", status_code=303)


def login_redirect(error: LoginRequired) -> RedirectResponse:
    return RedirectResponse(f"/login?next={quote(error.return_to)}", status_code=303)
