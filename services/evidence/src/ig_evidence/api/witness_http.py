"""HTTP ``POST /add-checkpoint`` of c2sp.org/tlog-witness, in front of ig_evidence.witness.cosigner.Witness.

200: the cosignature line(s), text/plain. 409: the size last cosigned, ``text/x.tlog.size``, as the spec requires
(a log reads it to resubmit from that size). Every other refusal (400, 403, 404, 422) is problem+json naming why.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response
from ig_common.http_server import problem

from ig_evidence.domain.witness import MAX_REQUEST_BYTES, WitnessRefusal
from ig_evidence.witness.cosigner import Witness

TLOG_SIZE = "text/x.tlog.size"
_TITLES = {400: "Bad Request", 403: "Forbidden", 404: "Not Found", 409: "Conflict", 422: "Unprocessable Entity"}


def witness_router(witness: Witness) -> APIRouter:
    router = APIRouter()

    @router.post("/add-checkpoint", response_class=PlainTextResponse,
                 summary="Cosign a checkpoint that extends the last one this witness cosigned (c2sp.org/tlog-witness)")
    async def add_checkpoint(request: Request) -> Response:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_REQUEST_BYTES:
                return problem(400, _TITLES[400], f"request body over {MAX_REQUEST_BYTES} bytes")
        try:
            # SQLite's fsync happens here: off the event loop, so health checks stay answered meanwhile.
            line = await asyncio.to_thread(witness.add_checkpoint, bytes(body))
        except WitnessRefusal as refusal:
            if refusal.status == 409:
                return Response(f"{refusal.latest_size}\n", status_code=409, media_type=TLOG_SIZE)
            return problem(refusal.status, _TITLES.get(refusal.status, "Refused"), refusal.detail)
        return PlainTextResponse(line, media_type="text/plain; charset=utf-8")

    return router
