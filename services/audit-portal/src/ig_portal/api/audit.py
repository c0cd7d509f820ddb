"""The JSON audit API: releases, artifacts, download links, signed files and access logs under /audit."""


import asyncio
import csv
import hashlib
import io
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from ig_common.spreadsheet import neutralise

from ig_portal.api import downloads
from ig_portal.api.catalog import EvidenceCatalog, Links, lookup, valid_artifact_id, valid_release
from ig_portal.api.grant_context import admitted_grant
from ig_portal.api.guard import Guard, new_download_id
from ig_portal.api.models import (
    AccessLogEntryOut,
    AccessLogOut,
    ArtifactOut,
    ArtifactsOut,
    DownloadLinkOut,
    Problem,
    ReleaseOut,
    ReleasesOut,
)
from ig_portal.api.pdf_stamping import PdfStamper
from ig_portal.api.residency import ResidencyRefused
from ig_portal.clients.evidence import MANIFEST_FILES
from ig_portal.domain import watermark
from ig_portal.domain.access import CSV_COLUMNS, Action
from ig_portal.domain.access_log import LogFilter
from ig_portal.domain.identity import Principal
from ig_portal.domain.streamed_marks import TarAppendStream
from ig_portal.store.access_log import AccessLogStore, LogRow

ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": Problem, "content": {"application/problem+json": {}}}
    for code in (400, 401, 403, 404, 429, 503)
}


@dataclass
class AuditApi:
    guard: Guard
    catalog: EvidenceCatalog
    links: Links
    pdf_stamper: PdfStamper
    access_log: AccessLogStore
    # The per-release log (page and /audit/access-logs) shows at most this many of the newest rows; the
    # tenant-wide log (api.access_log) pages through everything.
    release_log_rows: int = 1000

    async def caller(self, request: Request, *, download: bool = False) -> Principal:
        try:
            principal, _ = await self.guard.authenticate(request)
        except HTTPException as refused:
            # Refused tokens and tenants pinned elsewhere are anonymous requests here: the address's bucket pays
            # (a bucket of the pinned tenant's user would keep its data in this region).
            if refused.status_code == 401 or isinstance(refused, ResidencyRefused):
                await self.guard.admit(request, None)
            raise
        await self.guard.admit(request, principal, download=download)
        if principal is None:
            raise HTTPException(401, "authentication required", headers={"WWW-Authenticate": "Bearer"})
        return principal

    def router(self) -> APIRouter:
        router = APIRouter(prefix="/audit", tags=["audit"], responses=ERRORS)

        async def caller(request: Request) -> Principal:
            return await self.caller(request)

        Caller = Annotated[Principal, Depends(caller)]

        @router.get("/releases", response_model=ReleasesOut, summary="Releases of the caller's tenant")
        async def releases(request: Request, principal: Caller) -> ReleasesOut:
            found = await lookup(self.catalog.releases(principal))
            await self.guard.record(request, principal, Action.READ, "releases")
            return ReleasesOut(tenant=principal.tenant, releases=[
                ReleaseOut(name=r.name, manifestSha256=r.manifest_sha256, complete=r.complete) for r in found])

        @router.get("/artifacts", response_model=ArtifactsOut, summary="Artifacts of one release")
        async def artifacts(request: Request, principal: Caller,
                            release: Annotated[str, Query(min_length=1, max_length=64)]) -> ArtifactsOut:
            name = valid_release(release)
            found = await lookup(self.catalog.artifacts(principal, name))
            await self.guard.record(request, principal, Action.READ, f"artifacts:{name}", release=name)
            return ArtifactsOut(release=name, artifacts=[
                ArtifactOut(id=a.id, release=a.release, name=a.name, type=a.type, mediaType=a.media_type,
                            size=a.size, sha256=a.sha256) for a in found])

        @router.get("/download/{artifactId}", response_model=DownloadLinkOut,
                    summary="Issue a time-boxed download link (admins may choose ttl up to the cap)")
        async def download(request: Request, principal: Caller, artifactId: str,
                           ttl: Annotated[int | None, Query(ge=1, le=86400)] = None) -> DownloadLinkOut:
            artifact_id = valid_artifact_id(artifactId)
            artifact = await lookup(self.catalog.artifact(principal, artifact_id))
            download_id = new_download_id()
            url, expires = self.links.issue(principal, artifact_id, download_id, ttl)
            await self.guard.record(request, principal, Action.READ, f"link:{artifact_id}",
                                    release=artifact.release, download_id=download_id)
            return DownloadLinkOut(url=url, downloadId=download_id, expiresAt=expires)

        @router.get("/files/{artifactId}", summary="The watermarked artifact behind a signed link",
                    responses={200: {"content": {"application/octet-stream": {}}}})
        async def files(request: Request, artifactId: str,
                        dl: Annotated[str, Query(pattern=r"^dl_[0-9a-f]{32}$")],
                        exp: Annotated[int, Query(ge=0, le=2**40)],
                        sig: Annotated[str, Query(pattern=r"^[0-9a-f]{64}$")]) -> Response:
            principal = await self.caller(request, download=True)
            artifact_id = valid_artifact_id(artifactId)
            self.links.check(principal, artifact_id, dl, exp, sig)
            artifact, chunks = await lookup(self.catalog.open_content(principal, artifact_id))
            try:
                prepared = await downloads.prepare(artifact, chunks, self.mark(principal, dl), self.pdf_stamper)
            except BaseException:
                await chunks.aclose()
                raise
            try:
                await self.guard.record(request, principal, Action.DOWNLOAD, f"artifact:{artifact_id}",
                                        release=artifact.release, download_id=dl)
            except BaseException:
                await downloads.discard(prepared)
                raise
            return downloads.response(prepared, dl, artifact.sha256)

        @router.get("/manifest/{release}/{file}", summary="A watermarked file of the release's signed manifest",
                    # the watermark's form decides: a JSON envelope, a text header, or a zip (cosign.pub, .sig)
                    responses={200: {"content": {"application/json": {}, "text/plain": {},
                                                 "application/zip": {}, "application/octet-stream": {}}}})
        async def manifest_file(request: Request, release: str,
                                file: Literal[MANIFEST_FILES]) -> Response:  # type: ignore[valid-type]
            principal = await self.caller(request, download=True)
            name = valid_release(release)
            files = await lookup(self.catalog.manifest(principal, name))
            if file not in files.files:
                raise HTTPException(404, "no such release or artifact")
            download_id = new_download_id()
            content = files.files[file]
            digest = hashlib.sha256(content).hexdigest()
            marked = await apply_watermark(file, "", digest, content, self.mark(principal, download_id))
            await self.guard.record(request, principal, Action.DOWNLOAD, f"manifest:{name}/{file}", release=name,
                                    download_id=download_id)
            return attachment(marked, download_id, digest)

        @router.get("/kit/{release}", summary="The release's verify kit: bundle, pinned key, checkpoint and proofs, "
                    "checked offline by `ig-evidence verify <kit>`",
                    responses={200: {"content": {"application/x-tar": {}}}})
        async def verify_kit(request: Request, release: str) -> Response:
            principal = await self.caller(request, download=True)
            name = valid_release(release)
            info, chunks = await lookup(self.catalog.open_verify_kit(principal, name))
            download_id = new_download_id()
            # The kit's tar passes through; WATERMARK.txt is appended at its end (ig-evidence verify ignores it).
            prepared = downloads.Download("tar-member", "application/x-tar", info.file_name, chunks=chunks,
                                          marker=TarAppendStream(info.file_name, self.mark(principal, download_id)))
            try:
                await self.guard.record(request, principal, Action.DOWNLOAD, f"kit:{name}", release=name,
                                        download_id=download_id)
            except BaseException:
                await downloads.discard(prepared)
                raise
            return downloads.response(prepared, download_id, info.sha256)

        @router.get("/access-logs", summary="Access log of one release (admins only); the export is logged too",
                    response_model=AccessLogOut, responses={200: {"content": {"text/csv": {}}}})
        async def access_logs(request: Request, principal: Caller,
                              release: Annotated[str, Query(min_length=1, max_length=64)],
                              format: Literal["json", "csv"] = "json") -> Response:
            if not principal.is_admin:
                raise HTTPException(403, "access logs are for admins of the tenant")
            name = valid_release(release)
            await lookup(self.catalog.release(principal, name))
            recorded = await self.read_log(principal, name)
            await self.guard.record(request, principal, Action.EXPORT, f"access-log:{name}:{format}", release=name)
            if format == "csv":
                return Response(to_csv(recorded), media_type="text/csv", headers={
                    "Content-Disposition": f'attachment; filename="access-log-{name}.csv"'})
            body = AccessLogOut(release=name, entries=[to_out(r) for r in recorded])
            return Response(body.model_dump_json(), media_type="application/json")

        return router

    @staticmethod
    def mark(principal: Principal, download_id: str) -> watermark.Watermark:
        issued = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        grant = admitted_grant()
        return watermark.Watermark(user=principal.email or principal.user, tenant=principal.tenant,
                                   issued_at=issued, download_id=download_id, grant=grant.describe() if grant else "")

    async def read_log(self, principal: Principal, release: str) -> list[LogRow]:
        """The release's newest accesses, oldest first, from the access log's projection (never the whole log)."""
        rows, _ = await self.access_log.search(principal.tenant, LogFilter(release=release), below=None,
                                               limit=self.release_log_rows)
        return rows[::-1]


async def apply_watermark(name: str, media_type: str, sha256: str, content: bytes,
                          mark: watermark.Watermark) -> watermark.Marked:
    """PDF stamping and zipping are CPU work (pypdf parses and rewrites the document): done in a worker thread so
    the event loop keeps serving other requests meanwhile. JSON and text marks are cheap and stay inline."""
    if watermark.kind_of(name, media_type) in ("pdf", "zip"):
        return await asyncio.to_thread(watermark.apply, name, media_type, sha256, content, mark)
    return watermark.apply(name, media_type, sha256, content, mark)


def to_out(recorded: LogRow) -> AccessLogEntryOut:
    e = recorded.entry
    return AccessLogEntryOut(seq=recorded.seq, at=e.at, user=e.user, email=e.email, tenant=e.tenant,
                             action=e.action.value, object=e.object, release=e.release, download_id=e.download_id,
                             request_sha256=e.request_sha256, entry_hash=recorded.entry_hash)


def to_csv(recorded: list[LogRow]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(CSV_COLUMNS))
    writer.writeheader()
    for item in recorded:
        writer.writerow({k: neutralise(v) if isinstance(v, str) else v for k, v in to_out(item).model_dump().items()})
    return out.getvalue()


def attachment(marked: watermark.Marked, download_id: str, original_sha256: str) -> Response:
    return Response(marked.content, media_type=marked.media_type, headers={
        "Content-Disposition": f'attachment; filename="{downloads.safe_filename(marked.filename)}"',
        "X-IG-Download-Id": download_id, "X-IG-Watermark": marked.form, "X-IG-Original-Sha256": original_sha256,
        "Cache-Control": "no-store"})
