"""Every request passes the guard: who (token or session), how often (token buckets), and what was seen (ledger).

The ledger append happens before a response leaves; if it fails the request fails closed with 503.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import structlog
from fastapi import HTTPException, Request
from opentelemetry import trace
from prometheus_client import Counter, Histogram

from ig_portal.api.oidc import Provider, ProviderUnavailable, TokenRejected
from ig_portal.api.residency import ResidencyGate
from ig_portal.clients.ledger import AccessLedger, LedgerUnavailable
from ig_portal.domain.access import AccessEntry, Action, request_hash
from ig_portal.domain.identity import NotAuthorized, Principal, principal_from_claims
from ig_portal.domain.ratelimit import BucketSpec
from ig_portal.store.access_outbox import AccessOutbox
from ig_portal.store.ratelimits import RateLimitStore
from ig_portal.store.sessions import Session, SessionStore

log = structlog.get_logger(__name__)

SESSION_COOKIE = "ig_portal_session"
ACCESSES = Counter("ig_portal_access_total", "Accesses recorded in the ledger", ["action"])
REFUSALS = Counter("ig_portal_refused_total", "Requests refused by the guard", ["reason"])
LEDGER_SECONDS = Histogram("ig_portal_ledger_append_seconds", "Ledger append latency as seen by the portal")


@dataclass
class Guard:
    provider: Provider
    sessions: SessionStore
    limits: RateLimitStore
    ledger: AccessLedger
    accesses: AccessOutbox
    groups_claim: str
    tenant_claim: str
    requests_per_minute: float
    downloads_per_minute: float
    residency: ResidencyGate

    async def authenticate(self, request: Request) -> tuple[Principal | None, Session | None]:
        """The caller from a bearer token or a session cookie; (None, None) when neither is presented."""
        authorization = request.headers.get("authorization", "")
        if authorization:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise _unauthorized("expected 'Authorization: Bearer <token>'")
            try:
                claims = await self.provider.verify(token.strip())
                principal = principal_from_claims(claims, groups_claim=self.groups_claim,
                                                  tenant_claim=self.tenant_claim)
                self.residency.admit(principal, where="bearer")
                request.state.ig_principal = principal  # a refusal after this is recorded (api.refusals)
                return principal, None
            except TokenRejected as error:
                REFUSALS.labels("token").inc()
                log.info("token_rejected", reason=str(error))
                raise _unauthorized("token rejected") from error
            except NotAuthorized as error:
                REFUSALS.labels("no_role").inc()
                raise HTTPException(403, f"not authorized for the audit portal: {error}") from error
            except ProviderUnavailable as error:
                log.error("provider_unavailable", error=str(error))
                raise HTTPException(503, "identity provider unavailable") from error
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            session = await self.sessions.find(cookie)
            if session is not None:
                self.residency.admit(session.principal, where="session")
                request.state.ig_principal = session.principal  # a refusal after this is recorded (api.refusals)
                return session.principal, session
        return None, None

    async def admit(self, request: Request, principal: Principal | None, *, download: bool = False) -> None:
        """Take a token from the caller's bucket or answer 429 with Retry-After.

        A signed-in caller draws from its own bucket only (and its download bucket): many users behind one proxy
        or NAT share an address, and one of them must not lock the others out. Only anonymous requests (sign-in,
        refused tokens) draw from the address's bucket, the address being the socket peer or what a trusted proxy
        (IG_FORWARDED_ALLOW_IPS) reports."""
        per_request = BucketSpec(self.requests_per_minute)
        if principal is None:
            address = request.client.host if request.client else "unknown"
            buckets = [(f"addr:{address}", per_request)]
        else:
            buckets = [(f"user:{principal.tenant}/{principal.user}", per_request)]
            if download:
                buckets.append((f"download:{principal.tenant}/{principal.user}",
                                BucketSpec(self.downloads_per_minute)))
        denied = await self.limits.take(buckets)
        if denied is not None:
            REFUSALS.labels("rate_limited").inc()
            kind = denied.bucket.split(":", 1)[0]
            raise HTTPException(429, f"rate limit exceeded ({kind}); retry later",
                                headers={"Retry-After": str(denied.retry_after_seconds)})

    async def record(self, request: Request, principal: Principal, action: Action, object_: str, *,
                     release: str = "", download_id: str = "", status: int = 200) -> AccessEntry:
        at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        entry = AccessEntry(user=principal.user, tenant=principal.tenant, action=action, object=object_,
                            release=release, download_id=download_id,
                            request_sha256=request_hash(request.method, request.url.path, request.url.query,
                                                        principal.user, at), at=at, email=principal.email,
                            status=status)
        started = time.perf_counter()
        try:
            recorded = await self.ledger.append(entry, principal)
            seq = recorded.seq
            await self.accesses.publish(entry, recorded)
        except (LedgerUnavailable, asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as error:
            REFUSALS.labels("ledger_unavailable").inc()
            log.error("access_not_recorded", error=str(error), action=action.value, object=object_)
            raise HTTPException(503, "access could not be recorded in the ledger; refusing to serve") from error
        LEDGER_SECONDS.observe(time.perf_counter() - started)
        ACCESSES.labels(action.value).inc()
        span = trace.get_current_span()
        span.set_attribute("ig.portal.action", action.value)
        span.set_attribute("ig.portal.ledger_seq", seq)
        span.set_attribute("ig.tenant", principal.tenant)
        log.info("access_recorded", action=action.value, object=object_, tenant=principal.tenant, seq=seq)
        return entry


def new_download_id() -> str:
    return f"dl_{uuid.uuid4().hex}"


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": 'Bearer realm="audit-portal"'})
