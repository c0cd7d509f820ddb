"""Watermarks per type name the downloader, and ``unwrap`` always gives back the original bytes."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

import pytest
from ig_portal.domain.access import AccessEntry, Action
from ig_portal.domain.watermark import Watermark, apply, kind_of, unwrap
from pypdf import PdfReader, PdfWriter

MARK = Watermark(user="auditor@alpha.example", tenant="alpha", issued_at="2026-01-01T00:00:00Z",
                 download_id="dl_" + "1" * 32)


def pdf_bytes() -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(300, 200)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


@pytest.mark.parametrize(("name", "media_type", "content", "form"), [
    ("sbom.spdx.json", "application/spdx+json", b'{"spdxVersion": "SPDX-2.3"}', "json"),
    ("slo.csv", "text/csv", b"slo,value\nlatency,0.99\n", "text"),
    ("notes.txt", "text/plain", b"no trailing newline", "text"),
    ("report.pdf", "application/pdf", pdf_bytes(), "pdf"),
    ("bundle.tar.gz", "application/gzip", bytes(range(256)) * 4, "zip"),
    ("broken.pdf", "application/pdf", b"%PDF-1.7 not really", "zip"),
])
def test_each_form_carries_the_mark_and_unwraps_to_the_original(name: str, media_type: str, content: bytes,
                                                                 form: str) -> None:
    marked = apply(name, media_type, hashlib.sha256(content).hexdigest(), content, MARK)
    assert marked.form == form
    assert marked.content != content
    assert unwrap(marked.filename, marked.content) == content
    assert _visible_mark(marked.form, marked.content)


def _visible_mark(form: str, data: bytes) -> bool:
    if form == "json":
        body = json.loads(data)
        return bool(body["igWatermark"]["downloadId"] == MARK.download_id)
    if form == "text":
        return data.split(b"\n", 1)[0].decode().endswith(MARK.download_id)
    if form == "pdf":
        reader = PdfReader(io.BytesIO(data))
        return all(MARK.download_id in page.extract_text() for page in reader.pages)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return MARK.download_id in archive.read("WATERMARK.txt").decode()


def test_unmarked_bytes_unwrap_to_themselves() -> None:
    assert unwrap("x.bin", b"\x00\x01") == b"\x00\x01"
    assert unwrap("x.json", b'{"a": 1}') == b'{"a": 1}'


@pytest.mark.parametrize(("name", "media", "kind"), [("a.JSON", "", "json"), ("a", "text/markdown", "text"),
                                                      ("a.bin", "application/octet-stream", "zip")])
def test_kind_of(name: str, media: str, kind: str) -> None:
    assert kind_of(name, media) == kind


def test_access_entry_payload_is_canonical_and_round_trips() -> None:
    entry = AccessEntry("u", "alpha", Action.DOWNLOAD, "artifact:x", "v1.2.1", "dl_1", "ab" * 32, "t")
    payload = entry.payload()
    assert payload == json.dumps(json.loads(payload), sort_keys=True, separators=(",", ":")).encode()
    assert AccessEntry.from_payload(payload) == entry
