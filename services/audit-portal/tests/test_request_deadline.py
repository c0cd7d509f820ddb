"""A request whose backends are too slow is answered 503 (problem+json, Retry-After) within the deadline, instead
of holding the caller: a browser whose download response never starts just waits until its own timeout."""

from __future__ import annotations

import asyncio
import time

import httpx
from fastapi import FastAPI
from ig_portal.api.deadline import RequestDeadline


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
