"""The life of a service process: settings -> logs/traces -> PostgreSQL -> outbox relay -> servers -> signal.

A service's ``app.py`` only says which schema, migrations, gRPC servicers and HTTP routes it has.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import structlog
import uvloop
from fastapi import FastAPI

from ig_common.authz import AuthorizationTable, TableError
from ig_common.db import create_pool, prepare_service_schema
from ig_common.events.outbox import OutboxRelay
from ig_common.grpc_server import GrpcService, ServerSecurity, build_grpc_server, mark_serving
from ig_common.http_server import build_api_app, build_http_app, serve_http
from ig_common.lifecycle import stop_on_signals
from ig_common.logging import configure_logging
from ig_common.settings import GrpcServiceSettings, ServiceSettings, SettingsError, load_identity
from ig_common.telemetry import configure_tracing
from ig_common.tls import WorkloadCertificate

log = structlog.get_logger(__name__)


@dataclass
class Runtime:
    """What the wiring hands to a service's adapters."""

    settings: ServiceSettings
    schema: str
    pool: asyncpg.Pool
    relay: OutboxRelay
    stop: asyncio.Event
    # The service's own workload identity, for the calls it makes to other services.
    certificate: WorkloadCertificate
    # Who may call what (IG_AUTHZ_TABLE), loaded once: the gRPC interceptor's, for the service's other guards too
    # (its internal HTTP API, the ledger's kinds). None for a service that serves no gRPC.
    authz_table: AuthorizationTable | None = None
    background: list[asyncio.Task[None]] = field(default_factory=list)

    def spawn(self, coroutine: Awaitable[None], name: str) -> None:
        """Run ``coroutine`` until shutdown; a crash in it stops the service rather than going unnoticed."""
        task: asyncio.Task[None] = asyncio.ensure_future(coroutine)
        task.set_name(name)
        task.add_done_callback(self._on_background_done)
        self.background.append(task)

    def _on_background_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("background_task_failed", task=task.get_name(), error=repr(task.exception()))
            self.stop.set()


def run_process(service: Coroutine[Any, Any, None]) -> None:
    """The process entry point: run a service's main coroutine to the end on uvloop.

    Every service spends most of its CPU in the event loop's transports (gRPC aio, aiohttp, asyncpg, uvicorn);
    libuv's loop does that work in C, which is what keeps a hop through Python within a few milliseconds.
    """
    uvloop.run(service)


def server_security(settings: GrpcServiceSettings, certificate: WorkloadCertificate) -> ServerSecurity:
    try:
        if settings.authz_table is None:
            raise TableError("required to serve gRPC (the table of who may call which method)")
        table = AuthorizationTable.load(settings.authz_table)
    except TableError as error:
        print(f"invalid setting IG_AUTHZ_TABLE: {error}", file=sys.stderr)
        raise SettingsError(2) from error
    return ServerSecurity(certificate, table, reflection=settings.grpc_reflection)


GrpcFactory = Callable[[Runtime], Sequence[GrpcService]]
HttpFactory = Callable[[Runtime, FastAPI], None]
StartHook = Callable[[Runtime], Awaitable[None]]


async def run_service(
    settings: ServiceSettings,
    *,
    schema: str,
    migrations: Path,
    grpc_services: GrpcFactory | None = None,
    http_routes: HttpFactory | None = None,
    on_start: StartHook | None = None,
    reset_sessions: bool = True,
    relay_outbox: bool = True,
    grpc_reuse_port: bool = False,
) -> None:
    """``reset_sessions=False``: see ``ig_common.db.create_pool(reset_session=...)``. ``relay_outbox=False``: a
    helper process of the service publishes its outbox, so this process runs no relay. ``grpc_reuse_port``: this
    process is one of the service's workers sharing the gRPC port (``build_grpc_server(reuse_port=...)``)."""
    configure_logging(settings.service_name, settings.log_level, settings.region)
    configure_tracing(settings.service_name, settings.region, sample_ratio=settings.trace_sample_ratio)
    certificate = load_identity(settings)
    security = server_security(settings, certificate) if isinstance(settings, GrpcServiceSettings) else None
    stop = stop_on_signals()
    pool = await create_pool(settings.database_url, reset_session=reset_sessions)
    try:
        await prepare_service_schema(pool, schema, migrations, settings.migration_database_url)
        relay = OutboxRelay(pool, schema, settings.kafka_bootstrap, tls=certificate.client_ssl_context)
        runtime = Runtime(settings=settings, schema=schema, pool=pool, relay=relay, stop=stop,
                          certificate=certificate, authz_table=security.table if security is not None else None)
        if relay_outbox:
            runtime.spawn(relay.run(stop), "outbox-relay")
        if on_start is not None:
            await on_start(runtime)

        async def database_ready() -> bool:
            with contextlib.suppress(Exception):
                return bool(await pool.fetchval("SELECT true"))
            return False

        probes = build_http_app(settings.service_name, ready=database_ready)
        app = probes
        if settings.health_port is not None:
            app = build_api_app(settings.service_name)
            runtime.spawn(serve_http(probes, settings.http_host, settings.health_port, stop), "health-http")
        if http_routes is not None:
            http_routes(runtime, app)
        grpc_server = None
        if grpc_services is not None:
            if not isinstance(settings, GrpcServiceSettings):
                raise TypeError("a gRPC service needs GrpcServiceSettings")
            assert security is not None
            services = list(grpc_services(runtime))
            grpc_server, health = build_grpc_server(services, host=settings.grpc_host, port=settings.grpc_port,
                                                    security=security, reuse_port=grpc_reuse_port)
            await grpc_server.start()
            await mark_serving(health, [s.name for s in services])
        # Everything built so far lives as long as the process: move it out of the collector's sight, so a full
        # collection under load walks only what requests allocate (a pause there is a latency spike for all).
        gc.freeze()
        log.info("service_started", http_port=settings.http_port, health_port=settings.health_port,
                 grpc_port=getattr(settings, "grpc_port", None))
        await serve_http(app, settings.http_host, settings.http_port, stop)
        stop.set()
        if grpc_server is not None:
            await grpc_server.stop(grace=5)
        for task in runtime.background:
            task.cancel()
        await asyncio.gather(*runtime.background, return_exceptions=True)
        log.info("service_stopped")
    finally:
        await pool.close()
