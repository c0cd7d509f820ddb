"""JSON shapes of the audit API (these make the published OpenAPI document)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ReleaseOut(BaseModel):
    name: str
    manifestSha256: str
    complete: bool


class ReleasesOut(BaseModel):
    tenant: str
    releases: list[ReleaseOut]


class ArtifactOut(BaseModel):
    id: str
    release: str
    name: str
    type: str
    mediaType: str
    size: int
    sha256: str


class ArtifactsOut(BaseModel):
    release: str
    artifacts: list[ArtifactOut]


class DownloadLinkOut(BaseModel):
    url: str = Field(description="Relative URL of the signed, time-boxed download; only the same user may use it")
    downloadId: str
    expiresAt: int = Field(description="Unix time (seconds) after which the link answers 403")


class AccessLogEntryOut(BaseModel):
    seq: int
    at: str
    user: str
    email: str
    tenant: str
    action: str
    object: str
    release: str
    download_id: str
    request_sha256: str
    entry_hash: str


class AccessLogOut(BaseModel):
    release: str
    entries: list[AccessLogEntryOut]


class Problem(BaseModel):
    type: str = "about:blank"
    title: str
    status: int
    detail: str
