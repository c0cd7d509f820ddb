"""Time-boxed download links: an HMAC-SHA256 over artifact, user, tenant, expiry and download id."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass


class LinkRefused(Exception):
    """The link is expired, altered, or belongs to another user; the portal answers 403 for all three."""


@dataclass(frozen=True)
class DownloadGrant:
    artifact_id: str
    user: str
    tenant: str
    expires_at: int
    download_id: str


def _message(grant: DownloadGrant) -> bytes:
    # Length-prefixed fields: no two different grants can serialise to the same bytes.
    parts = (grant.artifact_id, grant.user, grant.tenant, str(grant.expires_at), grant.download_id)
    return b"".join(len(p.encode()).to_bytes(4, "big") + p.encode() for p in parts)


def sign(secret: bytes, grant: DownloadGrant) -> str:
    return hmac.new(secret, _message(grant), hashlib.sha256).hexdigest()


def verify(secret: bytes, grant: DownloadGrant, signature: str, now: int) -> DownloadGrant:
    """Return ``grant`` when ``signature`` is ours for it and it has not expired; raise LinkRefused otherwise."""
    expected = sign(secret, grant)
    if not hmac.compare_digest(expected, signature):
        raise LinkRefused("link signature does not match (altered, or issued to another user)")
    if now >= grant.expires_at:
        raise LinkRefused("link expired")
    return grant


def lifetime(requested: int | None, *, default: int, cap: int, may_choose: bool) -> int:
    """The link lifetime in seconds: the default, or an admin's choice within ``cap``."""
    if requested is None:
        return default
    if not may_choose:
        raise PermissionError("only an admin may choose a link lifetime")
    if not 1 <= requested <= cap:
        raise ValueError(f"ttl must be between 1 and {cap} seconds")
    return requested
