"""Watermarked downloads that stream: the artifact flows from the evidence service's GetArtifact stream through a
stream mark (``domain.streamed_marks``) to the browser, never whole in the portal's memory.

The one exception is a PDF small enough to stamp (``IG_PDF_STAMP_MAX_BYTES``): it is collected (bounded by that
cap), stamped in a worker process (``api.pdf_stamping``) and sent whole; a larger or unstampable PDF is zipped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from fastapi.responses import Response, StreamingResponse

from ig_portal.api.pdf_stamping import PdfStamper
from ig_portal.clients.evidence import ArtifactView
from ig_portal.domain import streamed_marks, watermark
from ig_portal.domain.streamed_marks import Chunk


@dataclass(frozen=True)
class Download:
    """What will be sent: either whole ``content`` (a stamped PDF) or ``chunks`` passed through ``marker``."""

    form: str
    media_type: str
    filename: str
    content: bytes | None = None
    chunks: AsyncIterator[Chunk] | None = None
    marker: streamed_marks.StreamMark | None = None
    # The streamed answer's length when known up front (the artifact's size per its metadata, through the mark):
    # sent with a Content-Length, the body passes to the socket as it is, where chunked framing copies every chunk.
    length: int | None = None


def stream_mark(artifact: ArtifactView, mark: watermark.Watermark) -> streamed_marks.StreamMark:
    kind = watermark.kind_of(artifact.name, artifact.media_type)
    if kind == "json":
        return streamed_marks.JsonEnvelopeStream(artifact.name, artifact.media_type, artifact.sha256, artifact.size,
                                                 mark)
    if kind == "text":
        return streamed_marks.TextStream(artifact.name, artifact.media_type, mark)
    return streamed_marks.ZipStream(artifact.name, mark)


async def prepare(artifact: ArtifactView, chunks: AsyncIterator[Chunk], mark: watermark.Watermark,
                  stamper: PdfStamper) -> Download:
    """Decide the form before the answer starts (its headers name it); only a stampable PDF is read ahead."""
    if watermark.kind_of(artifact.name, artifact.media_type) == "pdf" and stamper.accepts(artifact.size):
        collected = bytearray()
        async for chunk in chunks:
            collected += chunk
            if len(collected) > stamper.max_bytes:  # the metadata understated the size: stream it zipped instead
                return _streamed(streamed_marks.ZipStream(artifact.name, mark), _prepend(bytes(collected), chunks))
        stamped = await stamper.stamp(artifact.name, bytes(collected), mark)
        if stamped is not None:
            return Download("pdf", "application/pdf", artifact.name, content=stamped)
        return _streamed(streamed_marks.ZipStream(artifact.name, mark), _prepend(bytes(collected), _empty()))
    marker = stream_mark(artifact, mark)
    return _streamed(marker, chunks, marker.sent_length(artifact.size))


def _streamed(marker: streamed_marks.StreamMark, chunks: AsyncIterator[Chunk], length: int | None = None) -> Download:
    return Download(marker.form, marker.media_type, marker.filename, chunks=chunks, marker=marker, length=length)


async def _prepend(first: Chunk, rest: AsyncIterator[Chunk]) -> AsyncIterator[Chunk]:
    try:
        yield first
        async for chunk in rest:
            yield chunk
    finally:
        aclose = getattr(rest, "aclose", None)
        if aclose is not None:
            await aclose()


async def _empty() -> AsyncIterator[Chunk]:
    return
    yield b""  # pragma: no cover - makes this an async generator


async def marked_chunks(chunks: AsyncIterator[Chunk], marker: streamed_marks.StreamMark) -> AsyncIterator[Chunk]:
    try:
        async for chunk in chunks:
            out = marker.feed(chunk)
            if out:
                yield out
        tail = marker.finish()
        if tail:
            yield tail
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()


async def discard(download: Download) -> None:
    """Release the evidence stream of a download that will not be sent (e.g. the ledger refused)."""
    aclose = getattr(download.chunks, "aclose", None)
    if aclose is not None:
        await aclose()


def response(download: Download, download_id: str, original_sha256: str) -> Response:
    headers = {"Content-Disposition": f'attachment; filename="{safe_filename(download.filename)}"',
               "X-IG-Download-Id": download_id, "X-IG-Watermark": download.form,
               "X-IG-Original-Sha256": original_sha256, "Cache-Control": "no-store"}
    if download.content is not None:
        return Response(download.content, media_type=download.media_type, headers=headers)
    assert download.chunks is not None and download.marker is not None
    if download.length is not None:
        # Should the evidence service send more or fewer bytes than its metadata said, the server ends the answer
        # short of or at this length and the client sees a truncated download, never a different file.
        headers["Content-Length"] = str(download.length)
    return StreamingResponse(marked_chunks(download.chunks, download.marker), media_type=download.media_type,
                             headers=headers)


def safe_filename(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:200] or "artifact"
