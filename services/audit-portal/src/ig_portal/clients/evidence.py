"""The evidence catalog as the portal sees it: always asked for the signed-in user, whose verified identity goes
with every call (the evidence service takes the tenant from it)."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import IO, Any, Generic, Protocol, TypeVar

import grpc
from ig.evidence.v1 import evidence_pb2, evidence_pb2_grpc
from ig_common.grpc_client import RenewingStub

from ig_portal.clients.forwarding import UserForwarding
from ig_portal.domain.identity import Principal
from ig_portal.domain.streamed_marks import Chunk

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")


class NotFound(Exception):
    """No such release or artifact for this tenant (the portal never says which)."""


class Unavailable(Exception):
    """The evidence service did not answer in time."""


class NdaRequired(Exception):
    """The caller holds a grant for this release whose NDA they have not accepted yet."""

    def __init__(self, release: str) -> None:
        super().__init__(release)
        self.release = release


class ReleaseGate(Protocol):
    """Who may see which release (api.governance): consulted for every release the catalog hands out."""

    async def visible(self, user: Principal, releases: list[ReleaseView]) -> list[ReleaseView]: ...

    async def admit(self, user: Principal, release: str) -> None: ...


class KitRefused(Exception):
    """The evidence service could not assemble the release's verify kit: ``readable`` False when the stored bundle
    itself could not be read (an internal error while assembling), True when it declined for a stated reason
    (keyless signer, signer no longer pinned)."""

    def __init__(self, detail: str, *, readable: bool) -> None:
        super().__init__(detail)
        self.readable = readable


@dataclass(frozen=True)
class BundleVersionView:
    manifest_sha256: str
    ledger_seq: int
    registered_at: str
    complete: bool
    missing: tuple[str, ...]
    signer_name: str


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
    # The signer the evidence service verified the bundle against, from its own pinned configuration (cosign.pub
    # here is that signer's key, never the one the bundle carries).
    signer_name: str = ""
    signer_key_id: str = ""


MANIFEST_FILES = ("manifest.json", "manifest.json.sig", "manifest.sigstore.json", "cosign.pub")


def _artifact(message: evidence_pb2.Artifact) -> ArtifactView:
    return ArtifactView(message.id, message.release, message.name, message.type, message.media_type, message.size,
                        message.sha256)


class Recent(Generic[K, V]):
    """Answers of one catalog read per key, reused for ``seconds``; concurrent misses share a single call.

    Every portal request starts with the same reads (the tenant's releases, a release's artifacts, an artifact's
    metadata), and each used to be a gRPC call costing the evidence service as much CPU as the portal spent on
    the whole request. Keys always include the tenant, so nothing crosses tenants; failures are not kept."""

    def __init__(self, seconds: float, size: int = 4096) -> None:
        self.seconds = seconds
        self.size = size
        self._values: OrderedDict[K, tuple[V, float]] = OrderedDict()
        self._loading: dict[K, asyncio.Future[V]] = {}

    async def get(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        if self.seconds <= 0:
            return await load()
        found = self._values.get(key)
        if found is not None and found[1] > time.monotonic():
            return found[0]
        loading = self._loading.get(key)
        if loading is None:
            loading = asyncio.ensure_future(load())
            self._loading[key] = loading
            loading.add_done_callback(lambda done: self._settle(key, done))
        # Shielded: a caller that goes away must not cancel the call the other callers are waiting for.
        return await asyncio.shield(loading)

    def drop(self, key: K) -> None:
        """Forget ``key``'s answer (it changed here); a load under way is not awaited by later callers."""
        self._values.pop(key, None)
        self._loading.pop(key, None)

    def _settle(self, key: K, done: asyncio.Future[V]) -> None:
        if self._loading.get(key) is not done:
            return  # dropped while loading (drop): its answer may predate the change, so it is not kept
        self._loading.pop(key, None)
        if done.cancelled() or done.exception() is not None:
            return
        self._values[key] = (done.result(), time.monotonic() + self.seconds)
        self._values.move_to_end(key)
        while len(self._values) > self.size:
            self._values.popitem(last=False)


class EvidenceCatalog:
    def __init__(self, stubs: RenewingStub[evidence_pb2_grpc.EvidenceServiceStub], users: UserForwarding,
                 timeout: float = 10.0, cache_seconds: float = 0.0, download_timeout: float = 3600.0) -> None:
        self._stubs = stubs
        # A whole download must fit in its call's deadline, so it gets its own (much longer) one.
        self.download_timeout = download_timeout
        self.users = users
        self.timeout = timeout
        self._releases: Recent[str, list[ReleaseView]] = Recent(cache_seconds)
        self._artifacts: Recent[tuple[str, str], list[ArtifactView]] = Recent(cache_seconds)
        self._metadata: Recent[tuple[str, str], ArtifactView] = Recent(cache_seconds)
        self.gate: ReleaseGate | None = None  # set by the wiring when access grants are enforced

    @property
    def stub(self) -> evidence_pb2_grpc.EvidenceServiceStub:
        return self._stubs.get()

    async def releases(self, user: Principal) -> list[ReleaseView]:
        found = await self._releases.get(user.tenant, lambda: self._list_releases(user))
        return await self.gate.visible(user, found) if self.gate is not None else found

    async def _list_releases(self, user: Principal) -> list[ReleaseView]:
        reply = await self._call(self.stub.ListReleases(evidence_pb2.ListReleasesRequest(tenant=user.tenant),
                                                        timeout=self.timeout, metadata=self.users.metadata(user)))
        # Filter again here: a release of another tenant must never reach the page, whatever the backend did.
        return [ReleaseView(r.name, r.manifest_sha256, r.complete) for r in reply.releases
                if r.tenant == user.tenant]

    async def release(self, user: Principal, name: str) -> ReleaseView:
        for release in await self.releases(user):
            if release.name == name:
                if self.gate is not None:
                    await self.gate.admit(user, name)
                return release
        raise NotFound(name)

    async def artifacts(self, user: Principal, release: str) -> list[ArtifactView]:
        # Both lookups at once: the release check (tenant scope) and the listing are independent reads.
        _, found = await asyncio.gather(self.release(user, release), self._artifacts.get(
            (user.tenant, release), lambda: self._list_artifacts(user, release)))
        return found

    async def _list_artifacts(self, user: Principal, release: str) -> list[ArtifactView]:
        reply = await self._call(self.stub.ListArtifacts(
            evidence_pb2.ListArtifactsRequest(release=release, tenant=user.tenant), timeout=self.timeout,
            metadata=self.users.metadata(user)))
        return sorted((_artifact(a) for a in reply.artifacts if a.release == release), key=lambda a: a.name)

    async def artifact(self, user: Principal, artifact_id: str) -> ArtifactView:
        """The artifact's metadata, checked to belong to one of the tenant's releases."""
        return await self._metadata.get((user.tenant, artifact_id), lambda: self._metadata_of(user, artifact_id))

    async def _metadata_of(self, user: Principal, artifact_id: str) -> ArtifactView:
        found, _ = await self._fetch(user, artifact_id, with_content=False)
        return found

    async def open_content(self, user: Principal, artifact_id: str) -> tuple[ArtifactView, AsyncGenerator[Chunk, None]]:
        """The artifact's metadata (checked to belong to the tenant) and its bytes as they arrive.

        Nothing is collected: each chunk is handed on as the evidence service sends it, and gRPC's flow control
        holds the sender back while the browser is slower. The iterator cancels the call if it is closed early
        (the browser went away)."""
        call = self.stub.GetArtifact(evidence_pb2.GetArtifactRequest(artifact_id=artifact_id, tenant=user.tenant),
                                     timeout=self.download_timeout, metadata=self.users.metadata(user))
        first = await self._first(call, "artifact", artifact_id)
        meta = _artifact(first.artifact)
        try:
            await self.release(user, meta.release)
        except BaseException:
            call.cancel()
            raise
        return meta, self._chunks(call, artifact_id)

    async def open_verify_kit(self, user: Principal, release: str
                              ) -> tuple[evidence_pb2.VerifyKitInfo, AsyncGenerator[Chunk, None]]:
        """The release's verify kit described (the first message) and then streamed as it arrives."""
        await self.release(user, release)
        call = self.stub.GetVerifyKit(evidence_pb2.GetVerifyKitRequest(release=release, tenant=user.tenant),
                                      timeout=self.download_timeout, metadata=self.users.metadata(user))
        first = await self._first(call, "info", release)
        return first.info, self._chunks(call, release)

    async def _first(self, call: Any, part: str, what: str) -> Any:
        """A download stream's first message, which must carry ``part`` (the description); the call is cancelled
        on any failure, so no stream is left open."""
        try:
            first = await call.read()
            if first is grpc.aio.EOF or not first.HasField(part):
                raise NotFound(what)
            return first
        except grpc.aio.AioRpcError as error:
            call.cancel()
            raise self._translate(error) from error
        except BaseException:
            call.cancel()
            raise

    async def _chunks(self, call: Any, what: str) -> AsyncGenerator[Chunk, None]:
        try:
            while True:
                try:
                    part = await call.read()
                except grpc.aio.AioRpcError as error:
                    raise self._translate(error) from error
                if part is grpc.aio.EOF:
                    return
                yield part.chunk
        finally:
            call.cancel()  # a no-op once the call has finished

    async def manifest(self, user: Principal, release: str) -> ManifestFiles:
        """The signed manifest and signature files of the release's latest bundle."""
        await self.release(user, release)
        reply = await self._call(self.stub.GetManifest(
            evidence_pb2.GetManifestRequest(release=release, tenant=user.tenant), timeout=self.timeout,
            metadata=self.users.metadata(user)))
        contents = (reply.manifest, reply.signature, reply.sigstore_bundle, reply.public_key)
        files = {name: data for name, data in zip(MANIFEST_FILES, contents, strict=True) if data}
        return ManifestFiles(reply.release, reply.manifest_sha256, files, reply.signer_name, reply.signer_key_id)

    async def completeness(self, user: Principal, release: str) -> list[str]:
        """What the evidence service records as missing from the release's latest bundle."""
        reply = await self._call(self.stub.Completeness(
            evidence_pb2.CompletenessRequest(release=release, tenant=user.tenant), timeout=self.timeout,
            metadata=self.users.metadata(user)))
        return list(reply.missing)

    async def bundle_history(self, user: Principal, release: str) -> list[BundleVersionView]:
        """Every bundle registered for the release, oldest first (its amendments)."""
        reply = await self._call(self.stub.ListBundleHistory(
            evidence_pb2.ListBundleHistoryRequest(release=release, tenant=user.tenant), timeout=self.timeout,
            metadata=self.users.metadata(user)))
        return [BundleVersionView(b.manifest_sha256, b.ledger_seq, b.registered_at, b.complete, tuple(b.missing),
                                  b.signer_name) for b in reply.bundles]

    async def save_verify_kit(self, user: Principal, release: str, out: IO[bytes]) -> evidence_pb2.VerifyKitInfo:
        """The release's verify kit written to ``out``; KitRefused when the service cannot assemble it."""
        await self.release(user, release)
        call = self.stub.GetVerifyKit(evidence_pb2.GetVerifyKitRequest(release=release, tenant=user.tenant),
                                      timeout=self.download_timeout, metadata=self.users.metadata(user))
        info: evidence_pb2.VerifyKitInfo | None = None
        try:
            async for part in call:
                if part.HasField("info"):
                    info = part.info
                else:
                    await asyncio.to_thread(out.write, part.chunk)
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.FAILED_PRECONDITION:
                raise KitRefused(error.details() or "", readable=True) from error
            if error.code() in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.DATA_LOSS):
                raise KitRefused(error.details() or error.code().name, readable=False) from error
            raise self._translate(error) from error
        if info is None:
            raise NotFound(release)
        return info

    async def _fetch(self, user: Principal, artifact_id: str, *, with_content: bool
                     ) -> tuple[ArtifactView, bytes]:
        call = self.stub.GetArtifact(evidence_pb2.GetArtifactRequest(artifact_id=artifact_id, tenant=user.tenant),
                                     timeout=self.timeout, metadata=self.users.metadata(user))
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
        await self.release(user, meta.release)
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
