"""The HTTP side every service has: ``/healthz``, ``/metrics`` and problem+json errors; and, for an internal HTTP
API, a listener of its own that speaks TLS and requires a client certificate of the CA."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import REGISTRY
from prometheus_client.exposition import choose_encoder
from starlette.exceptions import HTTPException as StarletteHTTPException
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ig_common.http_body_limit import DEFAULT_MAX_BODY_BYTES, BodyLimit
from ig_common.telemetry import instrument_fastapi
from ig_common.tls import CA_FILE, CERT_FILE, KEY_FILE, WorkloadCertificate

log = structlog.get_logger(__name__)

PROBLEM_JSON = "application/problem+json"

HealthCheck = Callable[[], Awaitable[bool]]


def problem(status: int, title: str, detail: str, **extra: object) -> JSONResponse:
    """An RFC 9457 problem document."""
    body: dict[str, object] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def build_http_app(service_name: str, *, ready: HealthCheck | None = None, **fastapi_args: object) -> FastAPI:
    app = FastAPI(title=service_name, **fastapi_args)  # type: ignore[arg-type]

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> JSONResponse:
        ok = True if ready is None else await ready()
        return JSONResponse({"status": "ok" if ok else "unavailable"}, status_code=200 if ok else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        # Off the event loop: a collector may block (the policy supervisor reads its workers' /metrics over HTTP,
        # up to 2 s each), and on the loop a scrape would hold up the probes and every request meanwhile.
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(await asyncio.to_thread(encoder, REGISTRY), media_type=content_type)

    _problem_errors(app)
    instrument_fastapi(app)
    return app


def build_api_app(service_name: str, **fastapi_args: object) -> FastAPI:
    """An internal API's own app: problem+json errors, traces, no health or metrics (those stay on the plain
    health port, where probes and Prometheus reach them without a certificate)."""
    app = FastAPI(title=service_name, **fastapi_args)  # type: ignore[arg-type]
    _problem_errors(app)
    instrument_fastapi(app)
    return app


def _problem_errors(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        fields = [".".join(str(p) for p in e["loc"]) for e in error.errors()]
        return problem(400, "Invalid request", f"invalid field(s): {', '.join(fields)}", errors=error.errors())

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        response = problem(error.status_code, str(error.detail), str(error.detail))
        for name, value in (error.headers or {}).items():
            response.headers[name] = value
        return response


# How often a TLS listener looks for a renewed certificate (cert-manager renews hours before expiry).
CERTIFICATE_CHECK_SECONDS = 10.0


class _ClientCertificateProtocol(HttpToolsProtocol):
    """httptools, plus the ASGI TLS extension's ``client_cert_chain`` (uvicorn leaves it out): the client
    certificate the handshake verified, for a guard that takes the caller's identity from it."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        self._tls_extension = {"client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
                               "client_cert_name": None, "client_cert_error": None, "tls_version": None,
                               "cipher_suite": None, "server_cert": None}

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["extensions"] = {"tls": self._tls_extension}  # type: ignore[dict-item]


async def serve_http(app: Any, host: str, port: int, stop: asyncio.Event, *,
                     tls: WorkloadCertificate | None = None,
                     certificate_check_seconds: float = CERTIFICATE_CHECK_SECONDS,
                     expose_client_certificate: bool = False, reuse_port: bool = False,
                     max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
    """Run uvicorn inside the current event loop until ``stop`` is set.

    A request body over ``max_body_bytes`` is refused with 413 before anything behind this listener reads it
    (ig_common.http_body_limit).

    ``reuse_port``: listen with SO_REUSEPORT, sharing the port with a service's other worker processes (the kernel
    spreads connections over them); off by default, so a second service on a taken port fails to start.

    With ``tls``: HTTPS with that workload certificate, and a client certificate of its CA required (no
    certificate, or one of another CA, fails the handshake). uvicorn reads the files once; a renewed certificate is
    loaded into the listener's live ``ssl`` context, so the next handshake presents it, without a restart."""
    # Keep-alive clients (OFREP SDKs, gateways) must not hold a shutdown open for long. httptools (llhttp, C) parses
    # HTTP/1.1 for about half the CPU of the pure-Python h11 (make bench-burn's OFREP figures).
    tls_files: dict[str, Any] = {}
    if tls is not None:
        tls_files = {"ssl_certfile": str(tls.directory / CERT_FILE), "ssl_keyfile": str(tls.directory / KEY_FILE),
                     "ssl_ca_certs": str(tls.directory / CA_FILE), "ssl_cert_reqs": ssl.CERT_REQUIRED}
    # proxy_headers=False: uvicorn would otherwise believe X-Forwarded-For/-Proto from 127.0.0.1 (or
    # $FORWARDED_ALLOW_IPS) for every service; a service that sits behind a proxy names it in its own settings
    # (the audit portal's IG_FORWARDED_ALLOW_IPS).
    config = uvicorn.Config(BodyLimit(app, max_body_bytes), host=host, port=port, log_level="warning",
                            access_log=False, lifespan="off", timeout_graceful_shutdown=3, proxy_headers=False,
                            http=_ClientCertificateProtocol if expose_client_certificate and tls else "httptools",
                            **tls_files)
    watcher: asyncio.Task[None] | None = None
    if tls is not None:
        config.load()  # builds config.ssl now (serve() then keeps it), so that renewals can be loaded into it
        assert config.ssl is not None
        watcher = asyncio.create_task(_keep_certificate_fresh(config.ssl, tls, certificate_check_seconds))
    server = uvicorn.Server(config)
    sockets = [_reuse_port_socket(host, port)] if reuse_port else None
    server_task = asyncio.create_task(server.serve(sockets=sockets))
    stop_task = asyncio.create_task(stop.wait())
    waiting = {server_task, stop_task} | ({watcher} if watcher is not None else set())
    done, pending = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    for task in pending - {server_task}:
        task.cancel()
    if server_task in done:
        server_task.result()
        if not server.started:
            raise OSError(f"cannot serve HTTP on {host}:{port}: already in use?")
        return
    server.should_exit = True
    await server_task


def _reuse_port_socket(host: str, port: int) -> socket.socket:
    """A listening socket of the port's SO_REUSEPORT group (uvicorn has no such option)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(2048)
        sock.setblocking(False)
    except OSError as error:
        sock.close()
        raise OSError(f"cannot serve HTTP on {host}:{port}: {error}") from error
    return sock


async def _keep_certificate_fresh(context: ssl.SSLContext, tls: WorkloadCertificate, every: float) -> None:
    served = tls.current()
    while True:
        await asyncio.sleep(every)
        tls.refresh()
        material = tls.current()
        if material is served:
            continue
        try:
            # The same context serves every new connection: loading the renewed chain into it is the renewal.
            context.load_cert_chain(tls.directory / CERT_FILE, tls.directory / KEY_FILE)
            context.load_verify_locations(cadata=material.ca_pem.decode())
        except (OSError, ssl.SSLError) as error:
            log.warning("https_certificate_reload_failed", error=str(error))
            continue
        served = material
        log.info("https_certificate_reloaded", spiffe_id=str(material.spiffe_id))
