"""The upload caps, on real tar and gzip bytes made by the standard library, fed in chunks as gRPC delivers them."""

from __future__ import annotations

import gzip
import io
import tarfile
import tracemalloc
from collections.abc import Iterable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ig_evidence.domain.upload_limits import RATIO_FLOOR, CapExceeded, MalformedUpload, UploadCheck, UploadLimits


def tar_of(members: Iterable[tuple[str, bytes]], *, fmt: int = tarfile.GNU_FORMAT) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


DEFAULTS = UploadLimits()


def feed(upload: bytes, limits: UploadLimits = DEFAULTS, chunk: int = 1 << 20) -> UploadCheck:
    check = UploadCheck(limits)
    for start in range(0, len(upload), chunk):
        check.feed(upload[start:start + chunk])
    check.finish()
    return check


BUNDLE = [("manifest.json", b'{"release": "v1.2.1"}'), ("manifest.json.sig", b"sig"),
          ("artifacts/load-report/report.json", b'{"p95": 1.4}' * 200), ("cosign.pub", b"-----BEGIN-----")]


@pytest.mark.parametrize("compress", [False, True], ids=["tar", "tar.gz"])
def test_a_bundle_within_the_caps_passes_and_its_members_are_counted(compress: bool) -> None:
    upload = tar_of(BUNDLE)
    upload = gzip.compress(upload) if compress else upload
    assert feed(upload, chunk=7).members == len(BUNDLE)


def test_pax_headers_are_metadata_not_members_and_their_size_record_is_honoured() -> None:
    long_name = "artifacts/" + "x" * 150 + ".json"  # longer than ustar's 100: tarfile writes a pax header
    upload = tar_of([(long_name, b"a" * 3000), ("manifest.json", b"{}")], fmt=tarfile.PAX_FORMAT)
    assert feed(upload, chunk=100).members == 2


@pytest.mark.parametrize(("limits", "members", "setting"), [
    (UploadLimits(max_member_bytes=1000), [("big.json", b"x" * 1001)], "IG_MAX_MEMBER_BYTES"),
    (UploadLimits(max_members=3), [(f"m{n}", b"x") for n in range(4)], "IG_MAX_MEMBERS"),
    (UploadLimits(max_uncompressed_bytes=20_000), [("a", b"x" * 9000), ("b", b"x" * 9000), ("c", b"x" * 9000)],
     "IG_MAX_UNCOMPRESSED_BYTES"),
    (UploadLimits(max_bundle_bytes=10_000), [("a", b"x" * 20_000)], "IG_MAX_BUNDLE_BYTES"),
])
def test_each_cap_refuses_naming_its_setting(limits: UploadLimits, members: list[tuple[str, bytes]],
                                             setting: str) -> None:
    with pytest.raises(CapExceeded) as refused:
        feed(tar_of(members), limits, chunk=4096)
    assert refused.value.setting == setting and str(refused.value).startswith(setting)


def test_a_gzip_bomb_is_refused_early_in_little_memory() -> None:
    bomb = gzip.compress(tar_of([("artifacts/zeros.bin", bytes(64 << 20))]), compresslevel=9)
    assert len(bomb) < 100_000  # 64 MiB of zeros in under 100 kB
    tracemalloc.start()
    try:
        with pytest.raises(CapExceeded) as refused:
            feed(bomb, chunk=64 << 10)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert refused.value.setting == "IG_MAX_COMPRESSION_RATIO"
    assert peak < 8 << 20, f"peak {peak} bytes while inflating"


def test_the_ratio_cap_spares_small_bundles_that_compress_well() -> None:
    # Under RATIO_FLOOR of inflated bytes a high ratio is a small JSON-heavy bundle, not a bomb.
    upload = gzip.compress(tar_of([("artifacts/report.json", b"{}" * (RATIO_FLOOR // 4))]), compresslevel=9)
    assert feed(upload).members == 1


@pytest.mark.parametrize("upload", [b"not a tar archive at all" * 40, b"\x1f\x8b" + b"garbage" * 100],
                         ids=["garbage", "bad gzip"])
def test_what_is_not_a_tar_archive_is_malformed(upload: bytes) -> None:
    with pytest.raises(MalformedUpload):
        feed(upload)


def test_a_truncated_upload_is_malformed() -> None:
    whole = tar_of(BUNDLE)
    with pytest.raises(MalformedUpload):
        feed(whole[:1500])
    with pytest.raises(MalformedUpload):
        feed(gzip.compress(whole)[:-20])


@settings(max_examples=40, deadline=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=700), min_size=1, max_size=40), compress=st.booleans())
def test_how_the_upload_is_chunked_never_changes_the_outcome(cuts: list[int], compress: bool) -> None:
    upload = tar_of(BUNDLE)
    upload = gzip.compress(upload) if compress else upload
    check, position = UploadCheck(UploadLimits()), 0
    for cut in cuts:
        check.feed(upload[position:position + cut])
        position += cut
    check.feed(upload[position:])
    check.finish()
    assert check.members == len(BUNDLE)


def test_verify_reads_no_metadata_file_past_its_cap(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec
    from ig_evidence.bundle.verify import METADATA_LIMIT, verify_bundle

    archive = tmp_path / "evidence-v1.2.1.tar"
    archive.write_bytes(tar_of([("manifest.json", b" " * (METADATA_LIMIT + 1))]))
    checked = verify_bundle(archive, ec.generate_private_key(ec.SECP256R1()).public_key())
    assert f"manifest.json: larger than {METADATA_LIMIT} bytes (refused)" in checked.problems
