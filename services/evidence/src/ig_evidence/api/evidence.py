"""gRPC ig.evidence.v1.EvidenceService: streamed bundle upload/download, releases, artifacts, completeness."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from datetime import UTC
from typing import Any

import grpc
import structlog
from ig.evidence.v1 import evidence_pb2, evidence_pb2_grpc
from ig_common.authz import current_caller
from opentelemetry import trace
from prometheus_client import Counter

from ig_evidence.api.missing_metric import MissingEvidenceGauge
from ig_evidence.api.residency import ResidencyGate
from ig_evidence.api.tenants import acting_tenant
from ig_evidence.api.verify_kits import KitUnavailable, assemble_kit
from ig_evidence.bundle.ingest import BundleRejected, ingest, ledger_payload, manifest_summary, read_metadata_files
from ig_evidence.bundle.keyless import KeylessVerifier
from ig_evidence.bundle.kit import file_chunks, kit_file_name
from ig_evidence.bundle.signer import BundleSigner, identify_signer
from ig_evidence.domain.manifest import BUNDLE_FILE, MANIFEST_FILE, RELEASE_NAME, SIGNATURE_FILE
from ig_evidence.domain.trusted_signers import SignerNotTrusted, TrustedSigners
from ig_evidence.domain.upload_limits import CapExceeded, MalformedUpload, UploadCheck, UploadLimits
from ig_evidence.store.blobs import BlobStore
from ig_evidence.store.bundles import ArtifactRow, BundleRow, BundleStore
from ig_evidence.store.ledger import LedgerStore
from ig_evidence.store.witnessing import Witnessing

log = structlog.get_logger(__name__)
tracer = trace.get_tracer(__name__)
BUNDLES_REGISTERED = Counter("ig_evidence_bundles_registered_total", "Bundle uploads by outcome", ["outcome"])
UPLOADS_REFUSED = Counter("ig_evidence_uploads_refused_total", "Bundle uploads refused at a cap while arriving",
                          ["cap"])
REGISTER_KIND = "evidence.bundle_registered"
DOWNLOAD_CHUNK = 1 << 20

Context = grpc.aio.ServicerContext[Any, Any]


def _artifact(row: ArtifactRow) -> evidence_pb2.Artifact:
    r = row.record
    return evidence_pb2.Artifact(id=row.id, release=row.release, name=r.name, type=r.type, media_type=r.media_type,
                                 size=r.size, sha256=r.sha256)


# One per process: the service reports at start-up (app.py) and on every registration.
MISSING_EVIDENCE = MissingEvidenceGauge()
BLOBS_MISSING = Counter("ig_evidence_artifact_blobs_missing_total",
                        "GetArtifact calls for a registered artifact with no bytes in the blob store (DATA_LOSS)")


def report_missing(rows: list[BundleRow]) -> None:
    """Expose each release's missing evidence, so the EvidenceMissingArtifact alert can fire."""
    MISSING_EVIDENCE.report(rows)


def _release(row: BundleRow) -> evidence_pb2.Release:
    return evidence_pb2.Release(name=row.release, tenant=row.tenant, manifest_sha256=row.manifest_sha256,
                                complete=row.complete)


class EvidenceServicer(evidence_pb2_grpc.EvidenceServiceServicer):
    def __init__(self, bundles: BundleStore, ledger: LedgerStore, blobs: BlobStore, *, limits: UploadLimits,
                 signers: TrustedSigners, residency: ResidencyGate, keyless: KeylessVerifier | None = None,
                 on_commit: Any = None, witnessing: Witnessing | None = None) -> None:
        self._bundles = bundles
        self._ledger = ledger
        self._blobs = blobs
        self._limits = limits
        self._signers = signers
        self._keyless = keyless
        self._on_commit = on_commit or (lambda: None)
        self._witnessing = witnessing  # the kits' head checkpoints carry the witnesses' cosignatures
        self._residency = residency

    async def _tenant(self, requested: str, context: Context, method: str, *, field: str = "tenant") -> str:
        """The verified tenant of the call, once residency admits it here: every RPC that stores or serves a
        tenant's data starts with this, before it reads the store or keeps a byte of the request."""
        tenant = await acting_tenant(requested, context, field=field)
        await self._residency.admit(tenant, context, method=method)
        return tenant

    async def RegisterBundle(self, request_iterator: AsyncIterator[evidence_pb2.RegisterBundleRequest],
                             context: Context) -> evidence_pb2.RegisterBundleResponse:
        first = await anext(aiter(request_iterator), None)
        if first is None or not first.HasField("header"):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "header: the first message must carry the header")
        assert first is not None
        header = first.header
        # Before the upload is written anywhere: a tenant pinned elsewhere leaves no byte in this region.
        tenant = await self._tenant(header.tenant, context, "RegisterBundle", field="header.tenant")
        if not RELEASE_NAME.fullmatch(header.release):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"header.release: {header.release!r} is not a "
                                "release name")
        out, temp = self._blobs.temp_file()
        digest, size = hashlib.sha256(), 0
        check = UploadCheck(self._limits)

        def accept(chunk: bytes) -> None:
            check.feed(chunk)  # the caps, before the bytes are kept
            out.write(chunk)

        try:
            with out:
                async for message in request_iterator:
                    if not message.HasField("chunk"):
                        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "chunk: only the first message may "
                                            "carry a header")
                    size += len(message.chunk)
                    digest.update(message.chunk)
                    try:
                        await asyncio.to_thread(accept, message.chunk)
                    except CapExceeded as error:
                        UPLOADS_REFUSED.labels(error.setting).inc()
                        log.warning("bundle_upload_refused", release=header.release, tenant=tenant, cap=error.setting,
                                    received_bytes=size, detail=str(error))
                        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"chunk: bundle refused: {error}")
                    except MalformedUpload as error:
                        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"chunk: bundle rejected: {error}")
                try:
                    await asyncio.to_thread(check.finish)
                except MalformedUpload as error:
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"chunk: bundle rejected: {error}")
            if size == 0:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "chunk: the bundle is empty")
            with tracer.start_as_current_span("evidence.ingest") as span:
                span.set_attribute("ig.evidence.release", header.release)
                span.set_attribute("ig.evidence.bundle_bytes", size)
                def identify(metadata: dict[str, bytes]) -> BundleSigner:
                    return identify_signer(metadata, self._signers.of(tenant), tenant, self._keyless)

                try:
                    bundle = await asyncio.to_thread(ingest, temp, digest.hexdigest(), self._blobs, identify, None)
                except SignerNotTrusted as error:
                    BUNDLES_REGISTERED.labels("untrusted_signer").inc()
                    log.warning("bundle_signer_not_trusted", release=header.release, tenant=tenant,
                                by=current_caller().actor, detail=str(error))
                    await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"chunk: bundle refused: {error}")
                    raise
                except BundleRejected as error:
                    BUNDLES_REGISTERED.labels("rejected").inc()
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"chunk: bundle rejected: {error}")
                    raise
        finally:
            temp.unlink(missing_ok=True)
        if bundle.manifest.get("release") != header.release:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"header.release: {header.release!r} but the "
                                f"manifest is for {bundle.manifest.get('release')!r}")
        existing = await self._bundles.find(tenant, bundle.manifest_sha256)
        if existing is not None:
            BUNDLES_REGISTERED.labels("already_registered").inc()
            return evidence_pb2.RegisterBundleResponse(release=existing.release,
                                                       manifest_sha256=existing.manifest_sha256,
                                                       ledger_seq=existing.ledger_seq, already_registered=True)
        entry, _ = await self._ledger.append(REGISTER_KIND, header.release, ledger_payload(
            header.release, tenant, bundle.manifest_sha256, bundle.archive_sha256), deduplicate=True, tenant=tenant)
        complete, missing, contract_version = manifest_summary(bundle.manifest)
        row = BundleRow(bundle.manifest_sha256, header.release, tenant, complete, missing, contract_version,
                        entry.fields.seq, bundle.signer.name, bundle.signer.key_id)
        inserted = await self._bundles.record(row, bundle.archive_sha256, bundle.records)
        self._on_commit()
        report_missing([row])
        BUNDLES_REGISTERED.labels("registered" if inserted else "already_registered").inc()
        log.info("bundle_registered", release=header.release, tenant=tenant, by=current_caller().actor,
                 manifest_sha256=bundle.manifest_sha256, ledger_seq=entry.fields.seq, complete=complete,
                 signer=bundle.signer.name, signer_key_id=bundle.signer.key_id)
        return evidence_pb2.RegisterBundleResponse(release=header.release, manifest_sha256=bundle.manifest_sha256,
                                                   ledger_seq=entry.fields.seq, already_registered=not inserted)

    async def ListReleases(self, request: evidence_pb2.ListReleasesRequest,
                           context: Context) -> evidence_pb2.ListReleasesResponse:
        rows = await self._bundles.latest_per_release(await self._tenant(request.tenant, context, "ListReleases"))
        return evidence_pb2.ListReleasesResponse(releases=[_release(r) for r in rows])

    async def _latest(self, release: str, requested_tenant: str, context: Context, method: str) -> BundleRow:
        tenant = await self._tenant(requested_tenant, context, method)
        if not RELEASE_NAME.fullmatch(release):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"release: {release!r} is not a release name")
        row = await self._bundles.latest(release, tenant)
        if row is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"release: no bundle registered for {release!r}")
        assert row is not None
        return row

    async def ListArtifacts(self, request: evidence_pb2.ListArtifactsRequest,
                            context: Context) -> evidence_pb2.ListArtifactsResponse:
        bundle = await self._latest(request.release, request.tenant, context, "ListArtifacts")
        rows = await self._bundles.artifacts(bundle)
        return evidence_pb2.ListArtifactsResponse(artifacts=[_artifact(r) for r in rows])

    async def GetArtifact(self, request: evidence_pb2.GetArtifactRequest,
                          context: Context) -> AsyncIterator[evidence_pb2.GetArtifactResponse]:
        if not request.artifact_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "artifact_id: required")
        tenant = await self._tenant(request.tenant, context, "GetArtifact")
        row = await self._bundles.artifact(request.artifact_id)
        # Another tenant's artifact is reported exactly like a missing one: no existence oracle.
        if row is None or row.tenant != tenant:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"artifact_id: no artifact {request.artifact_id!r}")
        assert row is not None
        chunks = self._blobs.read_chunks(row.record.sha256, DOWNLOAD_CHUNK)
        try:
            # The first read opens the blob, before anything is sent: a registered artifact whose bytes are gone (a
            # blob store lost or not shared between replicas) is DATA_LOSS naming it, not UNKNOWN half-way through.
            chunk = await asyncio.to_thread(next, chunks, None)
        except FileNotFoundError:
            BLOBS_MISSING.inc()
            log.error("artifact_blob_missing", artifact_id=request.artifact_id, sha256=row.record.sha256,
                      tenant=tenant)
            await context.abort(grpc.StatusCode.DATA_LOSS, f"artifact_id: the bytes of {request.artifact_id!r} "
                                f"(sha256 {row.record.sha256}) are missing from the blob store")
            raise
        yield evidence_pb2.GetArtifactResponse(artifact=_artifact(row))
        while chunk is not None:
            yield evidence_pb2.GetArtifactResponse(chunk=chunk)
            chunk = await asyncio.to_thread(next, chunks, None)

    async def GetManifest(self, request: evidence_pb2.GetManifestRequest,
                          context: Context) -> evidence_pb2.GetManifestResponse:
        # Tenant-scoped like ListArtifacts: another tenant's release is NOT_FOUND, exactly like a missing one.
        bundle = await self._latest(request.release, request.tenant, context, "GetManifest")
        archive = await self._bundles.archive_of(bundle)
        if archive is None or not self._blobs.exists(archive):
            await context.abort(grpc.StatusCode.NOT_FOUND, f"release: the bundle of {request.release!r} is not stored")
        assert archive is not None
        files = await asyncio.to_thread(read_metadata_files, self._blobs.path_of(archive))
        # The key offered with the manifest is the pinned one it was verified against, never the bundle's own.
        pinned = self._signers.pinned_key(bundle.tenant, bundle.signer_key_id)
        return evidence_pb2.GetManifestResponse(
            release=bundle.release, manifest_sha256=bundle.manifest_sha256, manifest=files.get(MANIFEST_FILE, b""),
            signature=files.get(SIGNATURE_FILE, b""), sigstore_bundle=files.get(BUNDLE_FILE, b""),
            public_key=pinned.pem if pinned is not None else b"", signer_name=bundle.signer_name,
            signer_key_id=bundle.signer_key_id)

    async def GetVerifyKit(self, request: evidence_pb2.GetVerifyKitRequest,
                           context: Context) -> AsyncIterator[evidence_pb2.GetVerifyKitResponse]:
        bundle = await self._latest(request.release, request.tenant, context, "GetVerifyKit")
        try:
            kit = await assemble_kit(bundle, self._bundles, self._ledger, self._blobs, self._signers,
                                     self._witnessing, self._keyless)
        except KitUnavailable as error:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"release: {error}")
            raise
        try:
            yield evidence_pb2.GetVerifyKitResponse(info=evidence_pb2.VerifyKitInfo(
                file_name=kit_file_name(bundle.release), size=kit.path.stat().st_size, sha256=kit.sha256,
                signer_name=kit.index.signer_name, signer_key_id=kit.index.signer_key_id,
                head_tree_size=kit.head_size))
            chunks = file_chunks(kit.path, DOWNLOAD_CHUNK)
            while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
                yield evidence_pb2.GetVerifyKitResponse(chunk=chunk)
        finally:
            kit.path.unlink(missing_ok=True)
        log.info("verify_kit_served", release=bundle.release, tenant=bundle.tenant, by=current_caller().actor,
                 head_tree_size=kit.head_size)

    async def Completeness(self, request: evidence_pb2.CompletenessRequest,
                           context: Context) -> evidence_pb2.CompletenessResponse:
        bundle = await self._latest(request.release, request.tenant, context, "Completeness")
        return evidence_pb2.CompletenessResponse(complete=bundle.complete, missing=bundle.missing,
                                                 contract_version=bundle.contract_version)

    async def ListBundleHistory(self, request: evidence_pb2.ListBundleHistoryRequest,
                                context: Context) -> evidence_pb2.ListBundleHistoryResponse:
        # Tenant-scoped like the rest: another tenant's release is NOT_FOUND, exactly like a missing one.
        latest = await self._latest(request.release, request.tenant, context, "ListBundleHistory")
        rows = await self._bundles.history(latest.release, latest.tenant)
        return evidence_pb2.ListBundleHistoryResponse(bundles=[evidence_pb2.BundleVersion(
            manifest_sha256=row.manifest_sha256, ledger_seq=row.ledger_seq,
            registered_at=at.astimezone(UTC).isoformat().replace("+00:00", "Z"), complete=row.complete,
            missing=row.missing, contract_version=row.contract_version, signer_name=row.signer_name,
            signer_key_id=row.signer_key_id) for row, at in rows])
