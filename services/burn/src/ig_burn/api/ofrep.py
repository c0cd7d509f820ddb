"""OFREP (OpenFeature Remote Evaluation Protocol) evaluation over the in-memory flag snapshot.

Product code evaluates flags far more often than anything else calls this service, so evaluations take a short
road: ``OfrepFastPath`` answers ``POST /ofrep/v1/evaluate/flags[/{key}]`` in front of the app-wide middleware stack
(routing, request validation, the OpenTelemetry ASGI middleware) with answers serialised once per flag-set change.
They stay observable: a Prometheus counter per outcome, and a server span for every request whose caller sends a
``traceparent`` plus a sampled share (``trace_ratio``) of the others. The FastAPI routes give the same answers
(both call ``OfrepResponder``) and document the endpoints in the OpenAPI document.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind
from prometheus_client import Counter
from starlette.types import ASGIApp, Receive, Scope, Send

from ig_burn.domain.flags import etag_matches, json_bytes, ofrep_not_found
from ig_burn.flag_cache import FlagCache

EVALUATIONS = Counter("ig_flags_evaluations_total", "OFREP evaluations, by outcome", ["outcome"])
_OUTCOMES = {name: EVALUATIONS.labels(name) for name in ("ok", "not_found", "invalid", "bulk", "not_modified")}
PREFIX = "/ofrep/v1/evaluate/flags"
MAX_BODY_BYTES = 64 * 1024  # an evaluation context is a few hundred bytes; refuse to buffer more
TRACER = trace.get_tracer(__name__)


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    etag: str | None = None
    outcome: str = "ok"


def _error(status: int, key: str | None, code: str, details: str) -> Answer:
    body: dict[str, Any] = {"errorCode": code, "errorDetails": details}
    if key is not None:
        body["key"] = key
    return Answer(status, json_bytes(body), outcome="invalid")


def context_error(raw: bytes, key: str | None) -> Answer | None:
    """OFREP bodies are ``{"context": {...}}``; evaluation is static, so the context is only validated."""
    if not raw.strip():
        return None
    try:
        body = json.loads(raw)
    except ValueError as error:
        return _error(400, key, "PARSE_ERROR", f"request body is not JSON: {error}")
    if not isinstance(body, dict):
        return _error(400, key, "PARSE_ERROR", "request body must be a JSON object")
    if "context" in body and not isinstance(body["context"], dict):
        return _error(400, key, "INVALID_CONTEXT", "context must be a JSON object")
    return None


class OfrepResponder:
    """The answer to one evaluation request, from the current snapshot: no I/O, no per-request encoding."""

    def __init__(self, cache: FlagCache) -> None:
        self._cache = cache

    def evaluate(self, key: str | None, body: bytes, if_none_match: str | None) -> Answer:
        invalid = context_error(body, key)
        if invalid is not None:
            return invalid
        snapshot = self._cache.ofrep
        if key is None:
            if etag_matches(if_none_match, snapshot.etag):
                return Answer(304, b"", snapshot.etag, "not_modified")
            return Answer(200, snapshot.bulk, snapshot.etag, "bulk")
        found = snapshot.single.get(key)
        if found is None:
            return Answer(404, json_bytes(ofrep_not_found(key)), outcome="not_found")
        return Answer(200, found)

    def respond(self, key: str | None, body: bytes, if_none_match: str | None) -> Answer:
        answer = self.evaluate(key, body, if_none_match)
        _OUTCOMES[answer.outcome].inc()
        return answer


def _headers(answer: Answer) -> list[tuple[bytes, bytes]]:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(answer.body))]
    if answer.etag is not None:
        headers.append((b"etag", answer.etag.encode()))
    return headers


class OfrepFastPath:
    """ASGI: OFREP evaluations answered here; every other request goes on to ``app`` (the full FastAPI stack)."""

    def __init__(self, responder: OfrepResponder, app: ASGIApp, *, trace_ratio: float,
                 tracer: trace.Tracer = TRACER) -> None:
        self.responder = responder
        self.app = app  # named ``app`` so middleware-stack introspection (FastAPI, OTel) still finds the stack
        self.trace_ratio = trace_ratio
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        evaluation, key = _evaluation_target(scope)
        if not evaluation:
            await self.app(scope, receive, send)
            return
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > MAX_BODY_BYTES:
                answer = _error(413, key, "GENERAL", f"request body exceeds {MAX_BODY_BYTES} bytes")
                _OUTCOMES["invalid"].inc()
                await _send(send, answer)
                return
            if not message.get("more_body", False):
                break
        if_none_match, traceparent = None, False
        for name, value in scope["headers"]:
            if name == b"if-none-match":
                if_none_match = value.decode("latin-1")
            elif name == b"traceparent":
                traceparent = True
        if traceparent or random.random() < self.trace_ratio:  # sampling, not security
            answer = self._traced(scope, key, body, if_none_match)
        else:
            answer = self.responder.respond(key, body, if_none_match)
        await _send(send, answer)

    def _traced(self, scope: Scope, key: str | None, body: bytes, if_none_match: str | None) -> Answer:
        carrier = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        route = PREFIX if key is None else f"{PREFIX}/{{key}}"
        attributes = {"http.request.method": "POST", "http.route": route, "url.path": scope["path"]}
        with self.tracer.start_as_current_span(f"POST {route}", context=propagate.extract(carrier),
                                               kind=SpanKind.SERVER, attributes=attributes) as span:
            answer = self.responder.respond(key, body, if_none_match)
            span.set_attribute("http.response.status_code", answer.status)
            if key is not None:
                span.set_attribute("feature_flag.key", key)
            span.set_attribute("ig.ofrep.outcome", answer.outcome)
        return answer


def _evaluation_target(scope: Scope) -> tuple[bool, str | None]:
    """(True, None) for bulk evaluation, (True, key) for one flag, (False, None) for any other request."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return False, None
    path: str = scope["path"]
    if path == PREFIX:
        return True, None
    if path.startswith(PREFIX + "/"):
        key = path[len(PREFIX) + 1:]
        if key and "/" not in key:
            return True, key
    return False, None


async def _send(send: Send, answer: Answer) -> None:
    await send({"type": "http.response.start", "status": answer.status, "headers": _headers(answer)})
    await send({"type": "http.response.body", "body": answer.body})


def serve_ahead_of_middleware(app: FastAPI, responder: OfrepResponder, *, trace_ratio: float,
                              tracer: trace.Tracer = TRACER) -> None:
    """Put ``OfrepFastPath`` in front of ``app``'s middleware stack (built lazily by Starlette on first request)."""
    build_stack = app.build_middleware_stack

    def build_with_ofrep_first() -> ASGIApp:
        return OfrepFastPath(responder, build_stack(), trace_ratio=trace_ratio, tracer=tracer)

    app.build_middleware_stack = build_with_ofrep_first  # type: ignore[method-assign]


def _response(answer: Answer) -> Response:
    headers = {"ETag": answer.etag} if answer.etag is not None else None
    return Response(answer.body, status_code=answer.status, headers=headers,
                    media_type="application/json" if answer.body else None)


def ofrep_router(responder: OfrepResponder) -> APIRouter:
    """The same evaluations as FastAPI routes: documented in OpenAPI, and served if the fast path is not installed."""
    router = APIRouter(prefix="/ofrep/v1", tags=["OFREP"])

    @router.post("/evaluate/flags/{key}", summary="Evaluate one flag (OFREP single-flag evaluation)")
    async def evaluate_flag(key: str, request: Request) -> Response:
        return _response(responder.respond(key, await request.body(), None))

    @router.post("/evaluate/flags", summary="Evaluate every flag (OFREP bulk evaluation, ETag aware)")
    async def evaluate_all(request: Request) -> Response:
        return _response(responder.respond(None, await request.body(), request.headers.get("if-none-match")))

    return router
