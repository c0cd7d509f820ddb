"""Browser sign-in: authorization code + PKCE against the provider, a server-side session, CSRF-safe logout."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated
from urllib.parse import urlencode, urlsplit

import structlog
from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ig_portal.api.guard import SESSION_COOKIE, Guard
from ig_portal.api.oidc import ProviderUnavailable, TokenRejected, pkce_pair
from ig_portal.api.page_docs import FORM_RESPONSES, HTML_PAGE, SIGN_IN_RESPONSES
from ig_portal.domain.identity import NotAuthorized, principal_from_claims
from ig_portal.store.sessions import PendingLogin

log = structlog.get_logger(__name__)
LOGIN_COOKIE = "ig_portal_login"


@dataclass
class Login:
    guard: Guard
    public_url: str
    cookie_secure: bool
    session_lifetime: int

    @property
    def redirect_uri(self) -> str:
        return f"{self.public_url}/callback"

    def at_public_host(self, request: Request) -> bool:
        """Whether the browser addressed the public URL's host (and port); the scheme is not compared, a TLS
        ingress in front may talk plain HTTP to the portal."""
        return request.headers.get("host", "").lower() == urlsplit(self.public_url).netloc.lower()

    def router(self) -> APIRouter:
        router = APIRouter(tags=["sign-in"], responses=SIGN_IN_RESPONSES)
        sessions, provider = self.guard.sessions, self.guard.provider

        @router.get("/login")
        async def login(request: Request, next: Annotated[str, Query(max_length=512)] = "/") -> Response:
            await self.guard.admit(request, None)
            # Only same-site paths: an open redirect after login would hand attackers a trusted link.
            return_to = next if next.startswith("/") and not next.startswith("//") and "\\" not in next else "/"
            if not self.at_public_host(request):
                # The login cookie binds the sign-in to the host it was set on, and the provider sends the browser
                # back to the public URL's host: a sign-in begun on any other name (127.0.0.1 for localhost)
                # could never finish. Begin it at the public URL instead (a fixed URL, never the Host header's).
                return RedirectResponse(f"{self.public_url}/login?{urlencode({'next': return_to})}",
                                        status_code=303)
            state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
            verifier, challenge = pkce_pair()
            await sessions.begin_login(state, PendingLogin(verifier, nonce, return_to))
            try:
                url = await provider.authorization_url(self.redirect_uri, state, nonce, challenge)
            except ProviderUnavailable as error:
                raise HTTPException(503, "identity provider unavailable") from error
            response = RedirectResponse(url, status_code=303)
            # Binds the login to this browser: a callback carrying someone else's state is refused.
            response.set_cookie(LOGIN_COOKIE, state, max_age=900, httponly=True, secure=self.cookie_secure,
                                samesite="lax", path="/callback")
            return response

        @router.get("/callback")
        async def callback(request: Request, state: Annotated[str, Query(max_length=128)] = "",
                           code: Annotated[str, Query(max_length=2048)] = "",
                           error: Annotated[str, Query(max_length=256)] = "") -> Response:
            await self.guard.admit(request, None)
            if error:
                raise HTTPException(401, f"sign-in refused by the identity provider: {error}")
            if not state or not code or request.cookies.get(LOGIN_COOKIE) != state:
                raise HTTPException(400, "sign-in state missing or not started in this browser")
            pending = await sessions.finish_login(state)
            if pending is None:
                raise HTTPException(400, "sign-in expired or already used; start again")
            try:
                token = await provider.exchange_code(code, pending.code_verifier, self.redirect_uri)
                claims = await provider.verify(token, nonce=pending.nonce)
                principal = principal_from_claims(claims, groups_claim=self.guard.groups_claim,
                                                  tenant_claim=self.guard.tenant_claim)
            except TokenRejected as rejected:
                log.info("login_rejected", reason=str(rejected))
                raise HTTPException(401, "sign-in failed") from rejected
            except NotAuthorized as refused:
                raise HTTPException(403, f"not authorized for the audit portal: {refused}") from refused
            except ProviderUnavailable as down:
                raise HTTPException(503, "identity provider unavailable") from down
            self.guard.residency.admit(principal, where="sign-in")  # before a session of theirs is stored here
            token_value, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
            await sessions.create(token_value, principal, csrf, timedelta(seconds=self.session_lifetime))
            log.info("login", user=principal.user, tenant=principal.tenant, role=principal.role.value)
            response = RedirectResponse(pending.return_to, status_code=303)
            response.set_cookie(SESSION_COOKIE, token_value, max_age=self.session_lifetime, httponly=True,
                                secure=self.cookie_secure, samesite="lax", path="/")
            response.delete_cookie(LOGIN_COOKIE, path="/callback")
            return response

        @router.post("/logout", responses=FORM_RESPONSES)
        async def logout(request: Request, csrf: Annotated[str, Form(max_length=128)] = "") -> Response:
            await self.guard.admit(request, None)
            _, session = await self.guard.authenticate(request)
            cookie = request.cookies.get(SESSION_COOKIE, "")
            # The form's token must match the session's: a cross-site form cannot know it.
            if session is None or not secrets.compare_digest(csrf, session.csrf_token):
                raise HTTPException(403, "sign-out refused: missing or wrong CSRF token")
            await sessions.delete(cookie)
            response = RedirectResponse("/signed-out", status_code=303)
            response.delete_cookie(SESSION_COOKIE, path="/", secure=self.cookie_secure, httponly=True,
                                   samesite="lax")
            return response

        @router.get("/signed-out", response_class=HTMLResponse, responses={200: HTML_PAGE})
        async def signed_out() -> Response:
            return Response("<!doctype html><p id='message'>Signed out.</p><p><a href='/'>Sign in again</a></p>",
                            media_type="text/html")

        return router
