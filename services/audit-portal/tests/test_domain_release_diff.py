"""What changed since the previous release (domain/release_diff.py): which release is previous, and the diff."""

from __future__ import annotations

import pytest
from ig_portal.domain.release_diff import (
    ArtifactDigest,
    ChangedArtifact,
    ReleaseDiff,
    diff_releases,
    previous_release,
)


@pytest.mark.parametrize(("names", "current", "expected"), [
    (["v1.2.0", "v1.2.1"], "v1.2.1", "v1.2.0"),
    (["v1.2.1"], "v1.2.1", None),  # the first release
    (["v1.2.9", "v1.2.10", "v1.2.11"], "v1.2.11", "v1.2.10"),  # numbers, not text: 10 after 9
    (["v1.2.9", "v1.2.10"], "v1.2.10", "v1.2.9"),
    (["v1.3.0-rc1", "v1.3.0", "v1.2.5"], "v1.3.0", "v1.3.0-rc1"),  # a pre-release comes before its release
    (["v1.3.0-rc1", "v1.3.0-rc2", "v1.2.5"], "v1.3.0-rc1", "v1.2.5"),
    (["v1.3.0-rc9", "v1.3.0-rc10"], "v1.3.0-rc10", "v1.3.0-rc9"),
    (["v2.0.0", "v1.0.0", "v3.0.0"], "v2.0.0", "v1.0.0"),  # later releases are not "previous"
    (["v1.0.0", "v1.1.0"], "v0.9.0", None),  # nothing earlier
    (["nightly-3", "v1.0.0"], "v1.0.0", "nightly-3"),  # unversioned names sort before versioned ones
])
def test_previous_release_is_the_one_just_before_in_version_order(names: list[str], current: str,
                                                                  expected: str | None) -> None:
    assert previous_release(names, current) == expected


def _a(name: str, sha: str, kind: str = "load-report") -> ArtifactDigest:
    return ArtifactDigest(name, kind, sha * 64, 10)


@pytest.mark.parametrize(("before", "after", "expected"), [
    ([_a("a.json", "1")], [_a("a.json", "1")], ReleaseDiff("v1", unchanged=1)),
    ([_a("a.json", "1")], [_a("a.json", "2")],
     ReleaseDiff("v1", changed=(ChangedArtifact("a.json", "load-report", "1" * 64, "2" * 64),))),
    ([], [_a("new.json", "3")], ReleaseDiff("v1", added=(_a("new.json", "3"),))),
    ([_a("old.json", "4")], [], ReleaseDiff("v1", removed=(_a("old.json", "4"),))),
    ([_a("a.json", "1"), _a("gone.txt", "5"), _a("same.csv", "6")],
     [_a("same.csv", "6"), _a("a.json", "7"), _a("b.json", "8")],
     ReleaseDiff("v1", added=(_a("b.json", "8"),), removed=(_a("gone.txt", "5"),),
                 changed=(ChangedArtifact("a.json", "load-report", "1" * 64, "7" * 64),), unchanged=1)),
    # the same bytes under another name are a removal and an addition: artifacts are matched by name
    ([_a("x.json", "9")], [_a("y.json", "9")], ReleaseDiff("v1", added=(_a("y.json", "9"),),
                                                           removed=(_a("x.json", "9"),))),
])
def test_artifacts_added_removed_and_changed_by_digest(before: list[ArtifactDigest], after: list[ArtifactDigest],
                                                       expected: ReleaseDiff) -> None:
    assert diff_releases("v1", before, after) == expected


def test_a_first_release_has_no_diff() -> None:
    assert diff_releases(None, [], [_a("a.json", "1")]) == ReleaseDiff(None)
