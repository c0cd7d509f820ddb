"""OFREP (OpenFeature Remote Evaluation Protocol) endpoints over the in-memory flag snapshot."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import Counter

from ig_burn.domain.flags import etag_matches, ofrep_not_found, ofrep_result
from ig_burn.flag_cache import FlagCache

EVALUATIONS = Counter("ig_flags_evaluations_total", "OFREP evaluations, by outcome", ["outcome"])


def _error(status: int, key: str | None, code: str, details: str) -> JSONResponse:
    body: dict[str, Any] = {"errorCode": code, "errorDetails": details}
    if key is not None:
        body["key"] = key
    return JSONResponse(body, status_code=status)


async def _context_error(request: Request, key: str | None) -> JSONResponse | None:
    """OFREP bodies are ``{"context": {...}}``; evaluation is static, so the context is only validated."""
    raw = await request.body()
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


def ofrep_router(cache: FlagCache) -> APIRouter:
    router = APIRouter(prefix="/ofrep/v1", tags=["OFREP"])

    @router.post("/evaluate/flags/{key}", summary="Evaluate one flag (OFREP single-flag evaluation)")
    async def evaluate_flag(key: str, request: Request) -> Response:
        invalid = await _context_error(request, key)
        if invalid is not None:
            EVALUATIONS.labels("invalid").inc()
            return invalid
        flag = cache.flags.get(key)
        if flag is None:
            EVALUATIONS.labels("not_found").inc()
            return JSONResponse(ofrep_not_found(key), status_code=404)
        EVALUATIONS.labels("ok").inc()
        return JSONResponse(ofrep_result(flag))

    @router.post("/evaluate/flags", summary="Evaluate every flag (OFREP bulk evaluation, ETag aware)")
    async def evaluate_all(request: Request) -> Response:
        invalid = await _context_error(request, None)
        if invalid is not None:
            EVALUATIONS.labels("invalid").inc()
            return invalid
        etag = cache.etag
        if etag_matches(request.headers.get("if-none-match"), etag):
            EVALUATIONS.labels("not_modified").inc()
            return Response(status_code=304, headers={"ETag": etag})
        EVALUATIONS.labels("bulk").inc()
        flags = [ofrep_result(f) for f in sorted(cache.flags.values(), key=lambda f: f.key)]
        return JSONResponse({"flags": flags}, headers={"ETag": etag})

    return router
