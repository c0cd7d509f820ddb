"""A request whose backends are too slow is answered 503 (problem+json, Retry-After) within the deadline, instead
of holding the caller: a browser whose download response never starts just waits until its own timeout."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from fastapi import FastAPI, HTTPException
from ig_portal.api.deadline import RequestDeadline
from prometheus_client import REGISTRY
from structlog.testing import capture_logs


def app_with(delay: float, deadline: float) -> FastAPI:
    app = FastAPI()

    @app.get("/files/x")
    async def slow() -> dict[str, str]:
        await asyncio.sleep(delay)  # stands in for a slow evidence call or ledger append
        return {"ok": "yes"}

    app.add_middleware(RequestDeadline, seconds=deadline)
    return app


async def get(app: FastAPI) -> tuple[httpx.Response, float]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://portal") as client:
        started = time.monotonic()
        response = await client.get("/files/x")
        return response, time.monotonic() - started


async def test_a_request_past_the_deadline_fails_closed_promptly() -> None:
    response, took = await get(app_with(delay=5.0, deadline=0.2))
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["retry-after"] == "1"
    assert took < 2.0


async def test_a_request_within_the_deadline_is_untouched() -> None:
    response, _ = await get(app_with(delay=0.01, deadline=5.0))
    assert response.status_code == 200 and response.json() == {"ok": "yes"}


def counted(status: str) -> float:
    return REGISTRY.get_sample_value("ig_portal_http_request_seconds_count", {"status": status}) or 0.0


def failing_app() -> FastAPI:
    app = FastAPI()

    @app.get("/boom")
    async def boom() -> dict[str, str]:
        raise RuntimeError("backend exploded")

    @app.get("/refused")
    async def refused() -> dict[str, str]:
        raise HTTPException(503, "ledger down")

    app.add_middleware(RequestDeadline, seconds=5.0, slow_seconds=0.05)
    return app


@pytest.mark.parametrize(("path", "status", "status_class"), [("/boom", 500, "5xx"), ("/refused", 503, "5xx")])
async def test_failed_requests_are_counted_and_logged_whether_or_not_traced(path: str, status: int,
                                                                              status_class: str) -> None:
    before = counted(status_class)
    transport = httpx.ASGITransport(app=failing_app(), raise_app_exceptions=False)
    with capture_logs() as logs:
        async with httpx.AsyncClient(transport=transport, base_url="http://portal") as client:
            response = await client.get(path)
    assert response.status_code == status
    assert counted(status_class) == before + 1
    assert [(e["event"], e["status"], e["path"]) for e in logs if e["event"] == "request_failed"] == [
        ("request_failed", status, path)]


async def test_slow_requests_are_logged_and_fast_ones_are_not() -> None:
    before = counted("2xx")
    with capture_logs() as logs:
        await get(app_with_slow_threshold(delay=0.1, slow_seconds=0.05))
        await get(app_with_slow_threshold(delay=0.0, slow_seconds=0.05))
    assert counted("2xx") == before + 2
    slow = [e for e in logs if e["event"] == "request_slow"]
    assert len(slow) == 1 and slow[0]["seconds"] >= 0.1 and slow[0]["status"] == 200


def app_with_slow_threshold(delay: float, slow_seconds: float) -> FastAPI:
    app = FastAPI()

    @app.get("/files/x")
    async def answer() -> dict[str, str]:
        await asyncio.sleep(delay)
        return {"ok": "yes"}

    app.add_middleware(RequestDeadline, seconds=5.0, slow_seconds=slow_seconds)
    return app
