"""The suite's residency proof: what counts as the tenant's data in a blob store, and when a proof passes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from ig_region_test.suite_residency import TenantFingerprints, blobs_in, proof

ALPHA = TenantFingerprints("alpha", "region-a", needles=("residency-probe-1234",),
                           blob_sha256=frozenset({hashlib.sha256(b"alpha's archive").hexdigest()}))


def test_a_blob_is_the_tenants_by_its_digest_by_a_needle_in_its_bytes_or_in_its_name(tmp_path: Path) -> None:
    (tmp_path / "sha256" / "ab").mkdir(parents=True)
    (tmp_path / "sha256" / "ab" / "copy").write_bytes(b"alpha's archive")
    (tmp_path / "notes.txt").write_bytes(b"... residency-probe-1234 ...")
    (tmp_path / "residency-probe-1234.bin").write_bytes(b"x")
    (tmp_path / "beta.bin").write_bytes(b"beta's archive")
    found = blobs_in(tmp_path, ALPHA)
    assert found["files_scanned"] == 4 and found["count"] == 3, found
    assert not any("beta.bin" in hit for hit in found["found"])


def test_an_empty_or_missing_store_holds_nothing(tmp_path: Path) -> None:
    missing = blobs_in(tmp_path / "missing", ALPHA)
    assert missing["exists"] is False and missing["count"] == 0


@pytest.mark.parametrize(("away", "home", "status"), [(0, 3, "passed"), (1, 3, "failed"), (0, 0, "failed")])
def test_a_proof_passes_only_with_nothing_elsewhere_and_the_data_seen_at_home(away: int, home: int,
                                                                             status: str) -> None:
    document = proof(ALPHA, {"region": "region-b", "count": away}, {"region": "region-a", "count": home})
    assert document["status"] == status


def test_each_needle_is_counted_however_many_other_hits_push_it_out_of_the_found_list(tmp_path: Path) -> None:
    for index in range(60):  # more files than `found` lists, each with another needle, sorted before the marker's
        (tmp_path / f"a-{index:02}").write_bytes(b"bundle-of-alpha")
    (tmp_path / "z-last").write_bytes(b"marker-123")
    fingerprints = TenantFingerprints("alpha", "region-a", ("bundle-of-alpha", "marker-123"), frozenset())
    found = blobs_in(tmp_path, fingerprints)
    assert len(found["found"]) == 50 and not any("marker-123" in hit for hit in found["found"])
    assert found["by_needle"] == {"bundle-of-alpha": 60, "marker-123": 1}
