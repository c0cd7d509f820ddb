"""OFREP evaluation over the snapshot: the fast path in front of the middleware answers exactly what the documented
FastAPI routes answer, validates bodies, honours ETags, counts outcomes and traces callers' and sampled requests."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from ig_burn.api.ofrep import OfrepResponder, ofrep_router, serve_ahead_of_middleware
from ig_burn.domain.flags import Flag, OfrepSnapshot, ofrep_result
from ig_burn.flag_cache import FlagCache
from ig_common.http_server import build_http_app
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY

T0 = datetime(2026, 1, 5, tzinfo=UTC)
FLAGS = [Flag("subs.optimizedBuffer", True, False, "ig-burn", "created", T0, 2),
         Flag("subs.rateLimitPerSecond", 500, True, "alice", "drill", T0, 5),
         Flag("ui.theme", {"dark": True}, False, "bob", "launch", T0, 1)]
URL = "/ofrep/v1/evaluate/flags"
TRACE_PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def responder_over(flags: list[Flag]) -> OfrepResponder:
    cache = FlagCache(pool=None, store=None)  # type: ignore[arg-type]  # never refreshed here: no database
    cache.flags = {f.key: f for f in flags}
    cache.ofrep = OfrepSnapshot.of(flags)
    return OfrepResponder(cache)


class Service:
    def __init__(self, *, fast: bool, trace_ratio: float = 0.0) -> None:
        self.exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        responder = responder_over(FLAGS)
        self.app = build_http_app("burn-test")
        self.app.include_router(ofrep_router(responder))
        if fast:
            serve_ahead_of_middleware(self.app, responder, trace_ratio=trace_ratio,
                                      tracer=provider.get_tracer("test"))

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://burn")


@pytest.fixture(params=[True, False], ids=["fast-path", "fastapi-routes"])
async def http(request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient]:
    async with Service(fast=request.param).client() as client:
        yield client


def evaluations(outcome: str) -> float:
    return REGISTRY.get_sample_value("ig_flags_evaluations_total", {"outcome": outcome}) or 0.0


async def test_single_flag_answers_are_the_ofrep_results(http: httpx.AsyncClient) -> None:
    before = evaluations("ok")
    for flag in FLAGS:
        response = await http.post(f"{URL}/{flag.key}", json={"context": {"targetingKey": "u1"}})
        assert response.status_code == 200 and response.headers["content-type"] == "application/json"
        assert response.json() == ofrep_result(flag)
    assert evaluations("ok") == before + len(FLAGS)
    empty = await http.post(f"{URL}/ui.theme", content=b"")
    assert empty.status_code == 200 and empty.json()["value"] == {"dark": True}


async def test_unknown_flag_is_flag_not_found(http: httpx.AsyncClient) -> None:
    before = evaluations("not_found")
    response = await http.post(f"{URL}/no.such.flag", json={"context": {}})
    assert response.status_code == 404
    assert response.json() == {"key": "no.such.flag", "errorCode": "FLAG_NOT_FOUND",
                               "errorDetails": "flag 'no.such.flag' is not in the registry"}
    assert evaluations("not_found") == before + 1


@pytest.mark.parametrize(("body", "code"), [(b"{not json", "PARSE_ERROR"), (b"[1]", "PARSE_ERROR"),
                                            (b'{"context": 5}', "INVALID_CONTEXT")])
async def test_bad_bodies_are_rejected_naming_the_problem(http: httpx.AsyncClient, body: bytes, code: str) -> None:
    single = await http.post(f"{URL}/ui.theme", content=body)
    assert single.status_code == 400 and single.json()["errorCode"] == code and single.json()["key"] == "ui.theme"
    bulk = await http.post(URL, content=body)
    assert bulk.status_code == 400 and bulk.json()["errorCode"] == code and "key" not in bulk.json()


async def test_bulk_evaluation_carries_an_etag_and_answers_304_when_it_matches(http: httpx.AsyncClient) -> None:
    response = await http.post(URL, json={"context": {"targetingKey": "u1"}})
    assert response.status_code == 200
    assert response.json() == {"flags": [ofrep_result(f) for f in FLAGS]}
    etag = response.headers["etag"]
    assert etag == OfrepSnapshot.of(FLAGS).etag
    for header in (etag, f'W/{etag}', f'"other", {etag}', "*"):
        not_modified = await http.post(URL, json={}, headers={"If-None-Match": header})
        assert not_modified.status_code == 304 and not_modified.content == b""
        assert not_modified.headers["etag"] == etag
    assert (await http.post(URL, json={}, headers={"If-None-Match": '"stale"'})).status_code == 200


async def test_fast_path_and_routes_send_the_same_bytes() -> None:
    async with Service(fast=True).client() as fast, Service(fast=False).client() as routes:
        for path, body in ((f"{URL}/subs.rateLimitPerSecond", b"{}"), (URL, b"{}"), (f"{URL}/nope", b""),
                           (f"{URL}/ui.theme", b'{"context": []}')):
            answers = [await client.post(path, content=body) for client in (fast, routes)]
            assert len({(a.status_code, a.content, a.headers.get("etag")) for a in answers}) == 1


async def test_fast_path_leaves_other_requests_to_the_app() -> None:
    async with Service(fast=True).client() as http:
        assert (await http.get(f"{URL}/ui.theme")).status_code == 405
        assert (await http.post(f"{URL}/a/b", json={})).status_code == 404
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        assert "/ofrep/v1/evaluate/flags/{key}" in (await http.get("/openapi.json")).json()["paths"]


async def test_oversized_bodies_are_refused_without_buffering_them() -> None:
    async with Service(fast=True).client() as http:
        response = await http.post(f"{URL}/ui.theme", content=b" " * (64 * 1024 + 1))
        assert response.status_code == 413 and response.json()["errorCode"] == "GENERAL"


async def test_callers_traceparent_is_always_traced_and_the_rest_sampled() -> None:
    unsampled = Service(fast=True, trace_ratio=0.0)
    async with unsampled.client() as http:
        await http.post(f"{URL}/ui.theme", json={})
        assert unsampled.exporter.get_finished_spans() == ()
        await http.post(f"{URL}/ui.theme", json={}, headers={"traceparent": TRACE_PARENT})
        [span] = unsampled.exporter.get_finished_spans()
    assert span.name == "POST /ofrep/v1/evaluate/flags/{key}"
    assert format(span.context.trace_id, "032x") == TRACE_PARENT.split("-")[1]
    attributes: dict[str, Any] = dict(span.attributes or {})
    assert attributes["feature_flag.key"] == "ui.theme" and attributes["http.response.status_code"] == 200
    everything = Service(fast=True, trace_ratio=1.0)
    async with everything.client() as http:
        for _ in range(3):
            await http.post(URL, json={})
    assert [s.name for s in everything.exporter.get_finished_spans()] == ["POST /ofrep/v1/evaluate/flags"] * 3


def test_snapshot_serialises_each_answer_once() -> None:
    snapshot = OfrepSnapshot.of(list(reversed(FLAGS)))
    assert {k: json.loads(v) for k, v in snapshot.single.items()} == {f.key: ofrep_result(f) for f in FLAGS}
    assert [f["key"] for f in json.loads(snapshot.bulk)["flags"]] == sorted(f.key for f in FLAGS)
    assert OfrepSnapshot.of([]).bulk == b'{"flags":[]}'
