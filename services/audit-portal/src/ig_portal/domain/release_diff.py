"""What changed between two releases of one tenant: which release came before, and artifacts added, removed and
changed, compared by name and SHA-256 (pure)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_VERSION = re.compile(r"v?(\d+(?:\.\d+)*)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?")
_RUNS = re.compile(r"(\d+)")


@dataclass(frozen=True)
class ArtifactDigest:
    name: str
    type: str
    sha256: str
    size: int


@dataclass(frozen=True)
class ChangedArtifact:
    name: str
    type: str
    before_sha256: str
    after_sha256: str


@dataclass(frozen=True)
class ReleaseDiff:
    previous: str | None  # None: this is the tenant's first release, nothing to compare with
    added: tuple[ArtifactDigest, ...] = ()
    removed: tuple[ArtifactDigest, ...] = ()
    changed: tuple[ChangedArtifact, ...] = ()
    unchanged: int = 0


def _natural(text: str) -> tuple[tuple[int, int | str], ...]:
    """'rc10' after 'rc9': digit runs compare as numbers, the rest as text."""
    return tuple((0, int(run)) if run.isdigit() else (1, run) for run in _RUNS.split(text) if run)


def release_order_key(name: str) -> tuple[object, ...]:
    """Semantic-version order for names like v1.2.10 or 2.0.0-rc1 (a pre-release before its release); any other
    name sorts before every versioned one, naturally among themselves."""
    found = _VERSION.fullmatch(name)
    if found is None:
        return (0, _natural(name))
    numbers = tuple(int(part) for part in found.group(1).split("."))
    pre = found.group(2)
    return (1, numbers, 0 if pre else 1, _natural(pre or ""), name)


def previous_release(names: Iterable[str], current: str) -> str | None:
    """The release immediately before ``current`` in version order among ``names`` (the tenant's releases)."""
    key = release_order_key(current)
    earlier = [name for name in names if name != current and release_order_key(name) < key]
    return max(earlier, key=release_order_key, default=None)


def diff_releases(previous: str | None, before: Sequence[ArtifactDigest],
                  after: Sequence[ArtifactDigest]) -> ReleaseDiff:
    """Artifacts are the same artifact when their names match; a changed one has another SHA-256."""
    if previous is None:
        return ReleaseDiff(None)
    old = {a.name: a for a in before}
    new = {a.name: a for a in after}
    added = tuple(new[name] for name in sorted(new.keys() - old.keys()))
    removed = tuple(old[name] for name in sorted(old.keys() - new.keys()))
    common = sorted(new.keys() & old.keys())
    changed = tuple(ChangedArtifact(name, new[name].type, old[name].sha256, new[name].sha256) for name in common
                    if old[name].sha256 != new[name].sha256)
    return ReleaseDiff(previous, added, removed, changed, len(common) - len(changed))
