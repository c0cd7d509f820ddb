"""Wiring only: settings -> adapters -> servers."""

from __future__ import annotations

import secrets

import httpx
import structlog
from fastapi import FastAPI, Request
from fastapi.responses import Response
from ig.ledger.v1 import ledger_pb2_grpc
from ig_common.grpc_client import RenewingStub
from ig_common.memory import tune_allocator_for_streaming
from ig_common.service import HttpFactory, Runtime, run_process, run_service
from ig_common.settings import load_settings

from ig_portal.api.access_log import AccessLogApi
from ig_portal.api.audit import AuditApi
from ig_portal.api.catalog import Links
from ig_portal.api.deadline import RequestDeadline
from ig_portal.api.edges import harden
from ig_portal.api.governance import Governance, GovernancePages
from ig_portal.api.guard import Guard
from ig_portal.api.login import Login
from ig_portal.api.oidc import Provider
from ig_portal.api.pages import LoginRequired, NdaFirst, Pages, login_redirect, nda_redirect
from ig_portal.api.pdf_stamping import PdfStamper
from ig_portal.api.refusals import RecordRefusals
from ig_portal.api.release_panel import ReleasePanel, load_contracts
from ig_portal.api.residency import ResidencyGate
from ig_portal.api.verification import ReleaseVerifier
from ig_portal.clients.chunk_parts import StreamingEvidenceStub
from ig_portal.clients.evidence import EvidenceCatalog
from ig_portal.clients.forwarding import UserForwarding
from ig_portal.clients.ledger import AccessLedger
from ig_portal.domain.access_log import Cursors
from ig_portal.settings import Settings
from ig_portal.store import MIGRATIONS, SCHEMA
from ig_portal.store.access_feed import AccessFeed
from ig_portal.store.access_log import AccessLogStore
from ig_portal.store.access_outbox import AccessOutbox
from ig_portal.store.grants import GrantStore
from ig_portal.store.purge import Purger
from ig_portal.store.ratelimits import RateLimitStore
from ig_portal.store.sessions import SessionStore

log = structlog.get_logger(__name__)


def routes(settings: Settings) -> HttpFactory:
    def add_routes(runtime: Runtime, app: FastAPI) -> None:
        # Long-lived: each client moves to a new channel when the portal's certificate is renewed on disk.
        evidence_stubs = RenewingStub(StreamingEvidenceStub, settings.evidence_target, runtime.certificate)
        ledger_stubs = RenewingStub(ledger_pb2_grpc.LedgerServiceStub, settings.evidence_target, runtime.certificate)
        users = UserForwarding(runtime.certificate, runtime.certificate.spiffe_id.sibling(settings.evidence_identity))
        # The issuer's certificate is checked against IG_OIDC_CA_FILE when set (a private CA's issuer), else the
        # system roots.
        http = httpx.AsyncClient(timeout=5.0, verify=settings.oidc_verify())
        provider = Provider(issuer=settings.oidc_issuer, client_id=settings.oidc_client_id,
                            client_secret=settings.oidc_client_secret, api_clients=settings.api_clients,
                            jwks_max_age_seconds=settings.oidc_jwks_max_age_seconds,
                            skew_seconds=settings.oidc_clock_skew_seconds,
                            jwks_refetch_seconds=settings.oidc_jwks_refetch_seconds, http=http,
                            verified_cache_seconds=settings.oidc_token_cache_seconds)
        # No relay wake-up per commit: the relay's 100 ms tick then publishes many accesses per Kafka round trip
        # (a wake-up per request cost a relay transaction per request).
        accesses = AccessOutbox(runtime.pool, runtime.schema)
        limits = RateLimitStore(runtime.pool, runtime.schema)
        runtime.spawn(accesses.run(), "access-outbox")
        runtime.spawn(limits.run(), "rate-limits")
        runtime.spawn(Purger(runtime.pool, runtime.schema, settings.purge_interval_seconds).run(), "purge")
        ledger = AccessLedger(ledger_stubs, users, settings.ledger_timeout_seconds)
        runtime.spawn(AccessFeed(runtime.pool, runtime.schema, ledger, tenants=settings.feed_tenants,
                                 interval=settings.access_log_feed_seconds).run(), "access-log-feed")
        guard = Guard(provider=provider, sessions=SessionStore(runtime.pool, runtime.schema),
                      limits=limits, ledger=ledger, accesses=accesses,
                      groups_claim=settings.oidc_groups_claim,
                      tenant_claim=settings.oidc_tenant_claim, requests_per_minute=settings.rate_requests_per_minute,
                      downloads_per_minute=settings.rate_downloads_per_minute,
                      residency=ResidencyGate(settings.residency))
        secret = settings.link_secret.encode() if settings.link_secret else secrets.token_bytes(32)
        if not settings.link_secret:
            log.warning("link_secret_random", detail="IG_LINK_SECRET unset: links only work on this replica")
        links = Links(secret=secret, default_ttl=settings.link_ttl_seconds, cap=settings.link_ttl_cap_seconds)
        catalog = EvidenceCatalog(evidence_stubs, users, cache_seconds=settings.catalog_cache_seconds,
                                  download_timeout=settings.download_timeout_seconds)
        stamper = PdfStamper(settings.pdf_stamp_max_bytes, settings.pdf_stamp_timeout_seconds)
        access_log = AccessLogStore(runtime.pool, runtime.schema)
        api = AuditApi(guard=guard, catalog=catalog, links=links, pdf_stamper=stamper, access_log=access_log)
        log_api = AccessLogApi(api, access_log, Cursors(secret),
                               export_max_rows=settings.access_log_export_max_rows)
        # Inside the deadline (added first = innermost): a refusal is recorded within the request's time.
        app.add_middleware(RecordRefusals, guard=guard)
        app.add_middleware(RequestDeadline, seconds=settings.request_deadline_seconds,
                           slow_seconds=settings.slow_request_seconds)
        app.include_router(api.router())
        app.include_router(log_api.router())
        app.include_router(log_api.page_router())
        verifier = ReleaseVerifier(catalog, cache_seconds=settings.verification_cache_seconds,
                                   wait_seconds=settings.verification_wait_seconds,
                                   ledger_key=settings.ledger_verifier_key or None, witnesses=settings.witnesses)
        panel = ReleasePanel(catalog, verifier, load_contracts(settings.contract_paths))
        governance = Governance(GrantStore(runtime.pool, runtime.schema), settings.catalog_cache_seconds)
        catalog.gate = governance
        pages = Pages(api, panel)
        app.include_router(GovernancePages(pages, governance).router())
        app.include_router(pages.router())
        app.include_router(Login(guard, settings.public_url, settings.cookie_secure,
                                 settings.session_lifetime_seconds).router())
        harden(app, forwarded_allow_ips=settings.forwarded_allow_ips, docs_enabled=settings.docs_enabled)

        @app.exception_handler(LoginRequired)
        async def to_login(_: Request, error: LoginRequired) -> Response:
            return login_redirect(error)

        @app.exception_handler(NdaFirst)
        async def to_nda(_: Request, error: NdaFirst) -> Response:
            return nda_redirect(error)

        async def close_clients() -> None:
            await runtime.stop.wait()
            await http.aclose()
            await evidence_stubs.close()
            await ledger_stubs.close()

        runtime.spawn(close_clients(), "portal-clients")

    return add_routes


def main() -> None:
    settings = load_settings(Settings)
    tune_allocator_for_streaming()
    # reset_sessions=False: nothing here keeps session state on a pooled connection (the migration advisory lock
    # is unlocked explicitly), so the pool's reset query per release was a wasted round trip.
    run_process(run_service(settings, schema=SCHEMA, migrations=MIGRATIONS,
                            http_routes=routes(settings), reset_sessions=False))


if __name__ == "__main__":
    main()
