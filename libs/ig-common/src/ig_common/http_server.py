"""The HTTP side every service has: ``/healthz``, ``/metrics`` and problem+json errors."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import make_asgi_app
from starlette.exceptions import HTTPException as StarletteHTTPException

from ig_common.telemetry import instrument_fastapi

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

    app.mount("/metrics", make_asgi_app())
    instrument_fastapi(app)
    return app


async def serve_http(app: FastAPI, host: str, port: int, stop: asyncio.Event) -> None:
    """Run uvicorn inside the current event loop until ``stop`` is set."""
    # Keep-alive clients (OFREP SDKs, gateways) must not hold a shutdown open for long. httptools (llhttp, C) parses
    # HTTP/1.1 for about half the CPU of the pure-Python h11 (make bench-burn's OFREP figures).
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off",
                            timeout_graceful_shutdown=3, http="httptools")
    server = uvicorn.Server(config)
    server_task = asyncio.create_task(server.serve())
    stop_task = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({server_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
    if server_task in done:
        stop_task.cancel()
        server_task.result()
        if not server.started:
            raise OSError(f"cannot serve HTTP on {host}:{port}: already in use?")
        return
    server.should_exit = True
    await server_task
