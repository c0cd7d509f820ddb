"""Publish targets: which earlier release is the schema diff's baseline, what a release carries, and the `gh`
commands of the GitHub target (GitHub cannot be reached here: a recording `gh` on PATH stands in for it and keeps
the uploaded files in a folder, so publish -> fetch round-trips; the directory target runs for real in
e2e/test_release_flow.py)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from ig_release.context import StageFailed
from ig_release.publish import DirectoryPublisher, GitHubPublisher, publisher_for, release_assets

FAKE_GH = """#!/usr/bin/env python3
import shutil, sys
from pathlib import Path
remote = Path({remote!r})
with open(remote.parent / "gh.calls", "a") as calls:
    calls.write(" ".join(sys.argv[1:]) + "\\n")
_, _release, action, tag, *rest = sys.argv
release = remote / tag
if action == "view":
    sys.exit(0 if release.is_dir() else 1)
if action == "create":
    release.mkdir(parents=True)
elif action == "upload":
    for name in rest[1:]:
        shutil.copyfile(name, release / Path(name).name)
elif action == "download":
    if not release.is_dir():
        print("release not found", file=sys.stderr)
        sys.exit(1)
    into = Path(rest[rest.index("--dir") + 1])
    pattern = rest[rest.index("--pattern") + 1] if "--pattern" in rest else "*"
    for found in release.glob(pattern):
        shutil.copyfile(found, into / found.name)
"""


def bundle_folder(folder: Path, version: str) -> Path:
    folder.mkdir(parents=True)
    for name in (f"evidence-{version}.tar.gz", "manifest.json", "manifest.json.sig", "manifest.sigstore.json"):
        (folder / name).write_text(f"{name} of {version}\n")
    return folder


def published(root: Path, *versions: str) -> None:
    for version in versions:
        bundle_folder(root / version, version)


def test_the_baseline_is_the_newest_earlier_release_by_version_not_by_name(tmp_path: Path) -> None:
    published(tmp_path, "v1.2.0", "v1.10.0", "v1.9.3", "v2.0.0")
    (tmp_path / "v1.11.0").mkdir()  # a folder without a bundle is no release
    target = DirectoryPublisher(tmp_path)
    assert target.previous_bundle("v1.11.0", tmp_path / "w", tmp_path / "log") == \
        tmp_path / "v1.10.0" / "evidence-v1.10.0.tar.gz"
    assert target.previous_bundle("v1.2.0", tmp_path / "w", tmp_path / "log") is None
    assert DirectoryPublisher(tmp_path / "nothing-yet").previous_bundle("v1.0.0", tmp_path, tmp_path / "log") is None


def test_a_release_carries_the_bundle_the_signed_manifest_and_the_pinned_key(tmp_path: Path) -> None:
    bundle = bundle_folder(tmp_path / "bundle", "v1.2.1")
    key = tmp_path / "cosign.pub"
    key.write_text("pinned\n")
    assert [p.name for p in release_assets(bundle, "v1.2.1", key)] == [
        "evidence-v1.2.1.tar.gz", "manifest.json", "manifest.json.sig", "manifest.sigstore.json", "cosign.pub"]
    (bundle / "manifest.keyless.sigstore.json").write_text("{}")
    assert "manifest.keyless.sigstore.json" in [p.name for p in release_assets(bundle, "v1.2.1", key)]
    (bundle / "manifest.json.sig").unlink()
    with pytest.raises(StageFailed, match=r"lacks manifest\.json\.sig"):
        release_assets(bundle, "v1.2.1", key)


def test_publishing_to_a_folder_replaces_the_release_whole_and_fetches_it_back(tmp_path: Path) -> None:
    target = DirectoryPublisher(tmp_path / "site")
    old = bundle_folder(tmp_path / "old", "v1.2.1")
    target.publish("v1.2.1", sorted(old.iterdir()), tmp_path / "log")
    (tmp_path / "site" / "v1.2.1" / "stale.txt").write_text("left from an earlier run")
    new = bundle_folder(tmp_path / "new", "v1.2.1")
    (new / "manifest.json").write_text("rebuilt\n")
    target.publish("v1.2.1", sorted(new.iterdir()), tmp_path / "log")
    fetched = target.fetch("v1.2.1", tmp_path / "fetched", tmp_path / "log")
    assert sorted(p.name for p in fetched.iterdir()) == sorted(p.name for p in new.iterdir())
    assert (fetched / "manifest.json").read_text() == "rebuilt\n"
    assert not list((tmp_path / "site").glob(".*partial"))


@pytest.fixture
def fake_gh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    remote = tmp_path / "github" / "releases"
    remote.mkdir(parents=True)
    gh = tmp_path / "bin" / "gh"
    gh.parent.mkdir()
    gh.write_text(FAKE_GH.format(remote=str(remote)))
    gh.chmod(0o755)
    monkeypatch.setenv("PATH", f"{gh.parent}{os.pathsep}{os.environ['PATH']}")
    return remote


def git_repo_with_tags(path: Path, *tags: str) -> Path:
    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(path), *args], check=True, capture_output=True)

    path.mkdir()
    git("init", "-q")
    git("-c", "user.email=t@example", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "x")
    for tag in tags:
        git("tag", tag)
    return path


def test_github_creates_the_release_once_uploads_with_clobber_and_fetches_it_back(tmp_path: Path,
                                                                                   fake_gh: Path) -> None:
    target = GitHubPublisher()
    bundle = bundle_folder(tmp_path / "bundle", "v1.2.1")
    assets = sorted(bundle.iterdir())
    assert target.publish("v1.2.1", assets, tmp_path / "log") == "GitHub release v1.2.1"
    target.publish("v1.2.1", assets, tmp_path / "log")  # a re-run of the job: the release exists, assets replaced
    calls = (fake_gh.parent / "gh.calls").read_text().splitlines()
    assert [c.split()[:2] for c in calls] == [["release", "view"], ["release", "create"], ["release", "upload"],
                                              ["release", "view"], ["release", "upload"]]
    assert calls[1] == "release create v1.2.1 --verify-tag --title v1.2.1 --notes "
    assert calls[2].startswith("release upload v1.2.1 --clobber ")
    fetched = target.fetch("v1.2.1", tmp_path / "fetched", tmp_path / "log")
    assert sorted(p.name for p in fetched.iterdir()) == [p.name for p in assets]


def test_github_baseline_is_the_previous_tags_bundle_and_a_tag_without_one_is_no_baseline(
        tmp_path: Path, fake_gh: Path) -> None:
    repo = git_repo_with_tags(tmp_path / "repo", "v1.1.0", "v1.2.0", "v1.2.1", "v1.3.0")
    target = GitHubPublisher(repo=repo)
    published(fake_gh, "v1.2.0")
    found = target.previous_bundle("v1.2.1", tmp_path / "previous", tmp_path / "log")
    assert found == tmp_path / "previous" / "evidence-v1.2.0.tar.gz" and found.read_text().endswith("v1.2.0\n")
    # v1.1.0 was released before evidence existed: no asset, so no baseline (and the job goes on)
    assert target.previous_bundle("v1.2.0", tmp_path / "previous-2", tmp_path / "log") is None


def test_publish_targets_are_named_clearly() -> None:
    assert isinstance(publisher_for("github"), GitHubPublisher)
    assert publisher_for("dir:/srv/evidence") == DirectoryPublisher(Path("/srv/evidence"))
    for bad in ("dir:", "s3://bucket", ""):
        with pytest.raises(ValueError, match="--publish must be dir:PATH or github"):
            publisher_for(bad)
