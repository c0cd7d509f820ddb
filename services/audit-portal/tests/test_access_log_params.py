"""The access log's filter parameters: parsed on the event loop (no thread-pool hop per search), named and
constrained as before."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from ig_portal.api.access_log import FilterQuery, log_filter


def app() -> FastAPI:
    api = FastAPI()

    @api.get("/log")
    async def search(params: FilterQuery) -> dict[str, Any]:
        chosen = log_filter(params)
        return {"user": chosen.user, "action": chosen.action, "since": str(chosen.since)}

    return api


def test_the_filter_is_built_without_the_thread_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_thread_pool(*_: object, **__: object) -> None:
        raise AssertionError("a dependency ran in the thread pool")

    monkeypatch.setattr("fastapi.dependencies.utils.run_in_threadpool", no_thread_pool)
    answer = TestClient(app()).get("/log", params={"user": "a@alpha.example", "action": "read",
                                                   "from": "2026-12-01T00:00:00Z"})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"user": "a@alpha.example", "action": "read", "since": "2026-12-01 00:00:00+00:00"}


def test_the_parameters_keep_their_names_and_constraints() -> None:
    api = app()
    parameters = {p["name"]: p for p in api.openapi()["paths"]["/log"]["get"]["parameters"]}
    assert list(parameters) == ["user", "action", "release", "outcome", "from", "until"]
    assert parameters["user"]["schema"]["maxLength"] == 320
    client = TestClient(api)
    assert client.get("/log", params={"action": "delete"}).status_code == 422  # the app maps it to a 400 problem
    assert client.get("/log", params={"user": "x" * 321}).status_code == 422
