"""What the routes share: turning catalog lookups into HTTP answers, and signing download links."""

from __future__ import annotations

import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlencode

from fastapi import HTTPException

from ig_portal.clients.evidence import EvidenceCatalog, NdaRequired, NotFound, Unavailable
from ig_portal.domain import links
from ig_portal.domain.identity import Principal
from ig_portal.domain.names import InvalidName, check_artifact_id, check_release

T = TypeVar("T")
NOT_FOUND = "no such release or artifact"


@dataclass
class Links:
    secret: bytes
    default_ttl: int
    cap: int

    def issue(self, principal: Principal, artifact_id: str, download_id: str,
              ttl: int | None = None) -> tuple[str, int]:
        """A relative URL for the signed download and its expiry (unix seconds)."""
        try:
            seconds = links.lifetime(ttl, default=self.default_ttl, cap=self.cap, may_choose=principal.is_admin)
        except PermissionError as error:
            raise HTTPException(403, str(error)) from error
        except ValueError as error:
            raise HTTPException(400, str(error)) from error
        expires = int(time.time()) + seconds
        grant = links.DownloadGrant(artifact_id, principal.user, principal.tenant, expires, download_id)
        query = urlencode({"dl": download_id, "exp": expires, "sig": links.sign(self.secret, grant)})
        return f"/audit/files/{artifact_id}?{query}", expires

    def check(self, principal: Principal, artifact_id: str, download_id: str, expires: int, signature: str) -> None:
        grant = links.DownloadGrant(artifact_id, principal.user, principal.tenant, expires, download_id)
        try:
            links.verify(self.secret, grant, signature, int(time.time()))
        except links.LinkRefused as error:
            raise HTTPException(403, f"download link refused: {error}") from error


def valid_release(value: str) -> str:
    try:
        return check_release(value)
    except InvalidName as error:
        raise HTTPException(400, str(error)) from error


def valid_artifact_id(value: str) -> str:
    try:
        return check_artifact_id(value)
    except InvalidName as error:
        raise HTTPException(400, str(error)) from error


async def lookup(call: Awaitable[T]) -> T:
    """Await a catalog call: missing and other-tenant objects both become the same 404."""
    try:
        return await call
    except NotFound as error:
        raise HTTPException(404, NOT_FOUND) from error
    except NdaRequired as error:
        raise HTTPException(403, f"accept the NDA of release {error.release} first, at /releases/{error.release}/nda"
                            ) from error
    except Unavailable as error:
        raise HTTPException(503, "evidence service unavailable") from error
    except NotImplementedError as error:
        # The evidence service predates this call: for the caller the file simply is not there.
        raise HTTPException(404, "not offered by the evidence service") from error


__all__ = ["EvidenceCatalog", "Links", "lookup", "valid_artifact_id", "valid_release"]
