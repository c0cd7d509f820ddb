"""The evidence catalog as the portal sees it: always asked with the caller's tenant."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

import grpc
from ig.evidence.v1 import evidence_pb2, evidence_pb2_grpc

T = TypeVar("T")


class NotFound(Exception):
    """No such release or artifact for this tenant (the portal never says which)."""


class Unavailable(Exception):
    """The evidence service did not answer in time."""


@dataclass(frozen=True)
class ReleaseView:
    name: str
    manifest_sha256: str
    complete: bool


@dataclass(frozen=True)
class ArtifactView:
    id: str
    release: str
    name: str
    type: str
    media_type: str
    size: int
    sha256: str


@dataclass(frozen=True)
class ManifestFiles:
    release: str
    manifest_sha256: str
    files: dict[str, bytes]


MANIFEST_FILES = ("manifest.json", "manifest.json.sig", "manifest.sigstore.json", "cosign.pub")


def _artifact(message: evidence_pb2.Artifact) -> ArtifactView:
    return ArtifactView(message.id, message.release, message.name, message.type, message.media_type, message.size,
                        message.sha256)


class EvidenceCatalog:
    def __init__(self, channel: grpc.aio.Channel, timeout: float = 10.0) -> None:
        self.stub = evidence_pb2_grpc.EvidenceServiceStub(channel)  # type: ignore[no-untyped-call]
        self.timeout = timeout

    async def releases(self, tenant: str) -> list[ReleaseView]:
        reply = await self._call(self.stub.ListReleases(evidence_pb2.ListReleasesRequest(tenant=tenant),
                                                        timeout=self.timeout))
        # Filter again here: a release of another tenant must never reach the page, whatever the backend did.
        return [ReleaseView(r.name, r.manifest_sha256, r.complete) for r in reply.releases if r.tenant == tenant]

    async def release(self, tenant: str, name: str) -> ReleaseView:
        for release in await self.releases(tenant):
            if release.name == name:
                return release
        raise NotFound(name)

    async def artifacts(self, tenant: str, release: str) -> list[ArtifactView]:
        # Both lookups at once: the release check (tenant scope) and the listing are independent reads.
        _, reply = await asyncio.gather(self.release(tenant, release), self._call(self.stub.ListArtifacts(
            evidence_pb2.ListArtifactsRequest(release=release, tenant=tenant), timeout=self.timeout)))
        return sorted((_artifact(a) for a in reply.artifacts if a.release == release), key=lambda a: a.name)

    async def artifact(self, tenant: str, artifact_id: str) -> ArtifactView:
        """The artifact's metadata, checked to belong to one of the tenant's releases."""
        found, _ = await self._fetch(tenant, artifact_id, with_content=False)
        return found

    async def content(self, tenant: str, artifact_id: str) -> tuple[ArtifactView, bytes]:
        return await self._fetch(tenant, artifact_id, with_content=True)

    async def manifest(self, tenant: str, release: str) -> ManifestFiles:
        """The signed manifest and signature files of the release's latest bundle."""
        await self.release(tenant, release)
        reply = await self._call(self.stub.GetManifest(
            evidence_pb2.GetManifestRequest(release=release, tenant=tenant), timeout=self.timeout))
        contents = (reply.manifest, reply.signature, reply.sigstore_bundle, reply.public_key)
        files = {name: data for name, data in zip(MANIFEST_FILES, contents, strict=True) if data}
        return ManifestFiles(reply.release, reply.manifest_sha256, files)

    async def _fetch(self, tenant: str, artifact_id: str, *, with_content: bool) -> tuple[ArtifactView, bytes]:
        call = self.stub.GetArtifact(evidence_pb2.GetArtifactRequest(artifact_id=artifact_id, tenant=tenant),
                                     timeout=self.timeout)
        meta: ArtifactView | None = None
        chunks: list[bytes] = []
        try:
            async for part in call:
                if part.HasField("artifact"):
                    meta = _artifact(part.artifact)
                    if not with_content:
                        call.cancel()
                        break
                else:
                    chunks.append(part.chunk)
        except grpc.aio.AioRpcError as error:
            raise self._translate(error) from error
        if meta is None:
            raise NotFound(artifact_id)
        await self.release(tenant, meta.release)
        return meta, b"".join(chunks)

    async def _call(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except grpc.aio.AioRpcError as error:
            raise self._translate(error) from error

    @staticmethod
    def _translate(error: grpc.aio.AioRpcError) -> Exception:
        if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED,
                            grpc.StatusCode.INVALID_ARGUMENT):
            return NotFound(error.details() or "")
        if error.code() == grpc.StatusCode.UNIMPLEMENTED:
            return NotImplementedError(f"evidence service lacks this call: {error.details()}")
        return Unavailable(f"evidence service: {error.code().name} {error.details()}")
