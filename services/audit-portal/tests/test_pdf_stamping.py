"""PDF stamping runs in a worker process: it stamps, and past its timeout the worker is killed (not abandoned)."""

from __future__ import annotations

import io
import multiprocessing
import time

from ig_portal.api.pdf_stamping import PdfStamper
from ig_portal.domain.watermark import Watermark, unwrap
from prometheus_client import REGISTRY
from pypdf import PdfReader, PdfWriter

MARK = Watermark(user="auditor@alpha.example", tenant="alpha", issued_at="2026-12-05T23:00:00Z",
                 download_id="dl_" + "b" * 32)


def a_pdf(pages: int) -> bytes:
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(595, 842)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def outcomes(outcome: str) -> float:
    return REGISTRY.get_sample_value("ig_portal_pdf_stamp_total", {"outcome": outcome}) or 0.0


async def test_a_pdf_is_stamped_in_the_worker_and_keeps_the_original() -> None:
    original = a_pdf(2)
    stamped = await PdfStamper(max_bytes=1 << 20, timeout_seconds=30).stamp("report.pdf", original, MARK)
    assert stamped is not None and stamped != original
    assert MARK.download_id in PdfReader(io.BytesIO(stamped)).pages[0].extract_text()
    assert unwrap("report.pdf", stamped) == original


async def test_a_stamp_past_its_timeout_is_killed_and_answers_none_promptly() -> None:
    big = a_pdf(15000)  # pypdf needs ~8 s for this one; the worker gets 50 ms
    before = outcomes("timeout")
    started = time.monotonic()
    stamped = await PdfStamper(max_bytes=64 << 20, timeout_seconds=0.05).stamp("big.pdf", big, MARK)
    took = time.monotonic() - started
    assert stamped is None and took < 3.0, took
    assert outcomes("timeout") == before + 1
    assert multiprocessing.active_children() == []  # killed and reaped, not left running


async def test_a_pdf_over_the_cap_is_not_stamped_at_all() -> None:
    before = outcomes("too_large")
    assert await PdfStamper(max_bytes=100, timeout_seconds=30).stamp("r.pdf", a_pdf(1), MARK) is None
    assert outcomes("too_large") == before + 1
