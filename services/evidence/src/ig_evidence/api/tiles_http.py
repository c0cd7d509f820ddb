"""The ledger as a C2SP tlog-tiles log over plain, read-only HTTP: /checkpoint, /tile/<L>/<N>[.p/<W>] and
/tile/entries/<N>[.p/<W>] (c2sp.org/tlog-tiles).

No authentication, by design: a transparency log's checkpoint and tiles are public (signed notes and hashes, no
payloads), so that any standard client, monitor, witness or CDN can fetch and verify them without the suite's
certificates. Only GET (and HEAD) are routed; nothing here writes.
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from ig_common.http_server import problem

from ig_evidence.domain import tiles
from ig_evidence.store.ledger import LedgerError, LedgerStore

TILE_TYPE = "application/octet-stream"
CHECKPOINT_TYPE = "text/plain; charset=utf-8"
# A tile's content never changes (a partial tile of width W is the first W hashes of the full one, for good).
IMMUTABLE = "public, max-age=31536000, immutable"
# The checkpoint moves as the log grows: clients and caches may keep it a few seconds only.
CHECKPOINT_CACHE = "public, max-age=2"


def tiles_router(ledger: LedgerStore) -> APIRouter:
    router = APIRouter()

    @router.api_route("/checkpoint", methods=["GET", "HEAD"])
    async def checkpoint() -> Response:
        try:
            signed = await ledger.latest_checkpoint()
        except LedgerError as error:
            return problem(404, "No checkpoint", str(error))
        return Response(signed, media_type=CHECKPOINT_TYPE, headers={"Cache-Control": CHECKPOINT_CACHE})

    @router.api_route("/tile/{path:path}", methods=["GET", "HEAD"])
    async def tile(path: str) -> Response:
        try:
            level, index, width = tiles.parse_tile_path(path)
        except ValueError as error:
            return problem(400, "Invalid tile path", f"path: {error} (want <L>/<N>[.p/<W>] or entries/<N>[.p/<W>], "
                                                     "N as x001/x234/067)")
        data = (await ledger.tree.entry_bundle(index, width) if level is None
                else await ledger.tree.tile(level, index, width))
        if data is None:
            return problem(404, "No such tile", f"tile/{path} is not part of the integrated tree")
        return Response(data, media_type=TILE_TYPE, headers={"Cache-Control": IMMUTABLE})

    return router
