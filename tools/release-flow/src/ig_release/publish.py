"""Where a release's signed evidence goes, and where the previous release's bundle (for the schema diff) is found.

Two targets with one contract: ``dir:PATH`` (a local folder, one sub-folder per release: the local run and its
test) and ``github`` (the GitHub release of the tag, through the `gh` CLI: the release workflow). Both can hand
back what they hold, so the job verifies the published copy rather than the one it built.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ig_release.context import StageFailed
from ig_release.process import run_logged
from ig_release.settings import REPO

VERSION = re.compile(r"^v(\d+)\.(\d+)\.(\d+)$")


def version_key(version: str) -> tuple[int, int, int]:
    found = VERSION.match(version)
    if not found:
        raise ValueError(f"not a release version: {version!r}")
    major, minor, patch = found.groups()
    return int(major), int(minor), int(patch)


def release_assets(bundle: Path, version: str, public_key: Path) -> list[Path]:
    """What a release carries: the bundle, the signed manifest beside it (what cosign checks) and the public key;
    the keyless Sigstore bundle too when the job signed one."""
    names = [f"evidence-{version}.tar.gz", "manifest.json", "manifest.json.sig", "manifest.sigstore.json"]
    if (bundle / "manifest.keyless.sigstore.json").is_file():
        names.append("manifest.keyless.sigstore.json")
    missing = [name for name in names if not (bundle / name).is_file()]
    if missing:
        raise StageFailed(f"the bundle in {bundle} lacks {', '.join(missing)}")
    return [bundle / name for name in names] + [public_key]


class Publisher(Protocol):
    def describe(self) -> str: ...

    def previous_bundle(self, version: str, work: Path, log: Path) -> Path | None:
        """The newest published release before ``version``: its bundle tarball, fetched into ``work``."""

    def publish(self, version: str, assets: list[Path], log: Path) -> str:
        """Put the assets where auditors get them; returns where."""

    def fetch(self, version: str, into: Path, log: Path) -> Path:
        """The published assets of ``version``, copied into ``into`` (a fresh folder)."""


@dataclass(frozen=True)
class DirectoryPublisher:
    root: Path

    def describe(self) -> str:
        return f"dir:{self.root}"

    def previous_bundle(self, version: str, work: Path, log: Path) -> Path | None:
        if not self.root.is_dir():
            return None
        current = version_key(version)
        earlier = [d.name for d in self.root.iterdir()
                   if d.is_dir() and VERSION.match(d.name) and version_key(d.name) < current
                   and (d / f"evidence-{d.name}.tar.gz").is_file()]
        if not earlier:
            return None
        newest = max(earlier, key=version_key)
        return self.root / newest / f"evidence-{newest}.tar.gz"

    def publish(self, version: str, assets: list[Path], log: Path) -> str:
        target = self.root / version
        staging = self.root / f".{version}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for asset in assets:
            shutil.copyfile(asset, staging / asset.name)
        # Whole or not at all: a reader never sees half a release.
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        with log.open("a", encoding="utf-8") as out:
            out.write(f"published {', '.join(a.name for a in assets)} to {target}\n")
        return str(target)

    def fetch(self, version: str, into: Path, log: Path) -> Path:
        shutil.rmtree(into, ignore_errors=True)
        shutil.copytree(self.root / version, into)
        return into


@dataclass(frozen=True)
class GitHubPublisher:
    """The tag's GitHub release, through `gh` (GH_TOKEN from the workflow). The release is created if the tag has
    none yet; assets are replaced (``--clobber``) so a re-run of the job converges."""

    gh: str = "gh"
    repo: Path = REPO  # whose tags name the releases

    def describe(self) -> str:
        return "github"

    def previous_bundle(self, version: str, work: Path, log: Path) -> Path | None:
        tags = subprocess.run(["git", "tag", "--list", "v*.*.*"], cwd=self.repo, capture_output=True, text=True,
                              check=True).stdout.split()
        current = version_key(version)
        earlier = [t for t in tags if VERSION.match(t) and version_key(t) < current]
        if not earlier:
            return None
        previous = max(earlier, key=version_key)
        work.mkdir(parents=True, exist_ok=True)
        done = run_logged([self.gh, "release", "download", previous, "--pattern", f"evidence-{previous}.tar.gz",
                           "--dir", str(work), "--clobber"], log, ok=(0, 1), what="gh release download")
        found = work / f"evidence-{previous}.tar.gz"
        # A previous tag without an evidence asset (older releases) is no baseline, not a failure.
        return found if done.returncode == 0 and found.is_file() else None

    def publish(self, version: str, assets: list[Path], log: Path) -> str:
        exists = run_logged([self.gh, "release", "view", version], log, ok=(0, 1), what="gh release view")
        if exists.returncode != 0:
            run_logged([self.gh, "release", "create", version, "--verify-tag", "--title", version, "--notes", ""],
                       log, what="gh release create")
        run_logged([self.gh, "release", "upload", version, "--clobber", *map(str, assets)], log,
                   what="gh release upload")
        return f"GitHub release {version}"

    def fetch(self, version: str, into: Path, log: Path) -> Path:
        shutil.rmtree(into, ignore_errors=True)
        into.mkdir(parents=True)
        run_logged([self.gh, "release", "download", version, "--dir", str(into)], log, what="gh release download")
        return into


def publisher_for(target: str) -> Publisher:
    """``dir:PATH`` or ``github``."""
    if target == "github":
        return GitHubPublisher()
    if target.startswith("dir:") and len(target) > len("dir:"):
        return DirectoryPublisher(Path(target[len("dir:"):]).resolve())
    raise ValueError(f"--publish must be dir:PATH or github, not {target!r}")
