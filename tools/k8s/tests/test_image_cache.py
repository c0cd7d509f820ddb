"""The build-inputs hash that decides whether a service image is rebuilt (image_cache.py), without buildah: the same
inputs give the same hash, and every kind of input that goes into the image changes it. The builds themselves
(skipped, tagged, rebuilt, same digest) are checked on buildah in tests/real/test_real_images.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from ig_infra.paths import REPO_ROOT
from ig_k8s.dockerfiles import mirror_build_context
from ig_k8s.image_cache import inputs_hash
from ig_k8s.suite import by_name

BURN = by_name("burn")
ARGS = {"PYTHON_BASE": "localhost/ig/python-base:3.11-bookworm", "SOURCE_DATE_EPOCH": "0"}


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the repository's build context and burn's Dockerfile, to change without touching the repository."""
    root = tmp_path_factory.mktemp("context")
    mirror_build_context(REPO_ROOT, root, BURN)
    return root


def fresh(context: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(context, copy)
    return copy


def test_the_same_inputs_give_the_same_hash_and_the_copy_hashes_like_the_repository(context: Path) -> None:
    first = inputs_hash(context, BURN, "sha256:base", ARGS)
    assert first == inputs_hash(context, BURN, "sha256:base", dict(reversed(list(ARGS.items()))))
    assert first == inputs_hash(REPO_ROOT, BURN, "sha256:base", ARGS)
    assert len(first) == 64


@pytest.mark.parametrize("change", ["source", "new_file", "renamed", "mode", "dockerfile", "lock"])
def test_a_changed_file_of_the_context_changes_the_hash(context: Path, tmp_path: Path, change: str) -> None:
    root = fresh(context, tmp_path)
    before = inputs_hash(root, BURN, "sha256:base", ARGS)
    module = root / "services" / "burn" / "src" / "ig_burn" / "app.py"
    if change == "source":
        module.write_text(module.read_text() + "\n# changed\n")
    elif change == "new_file":
        (module.parent / "extra.py").write_text("X = 1\n")
    elif change == "renamed":
        module.rename(module.with_name("app_renamed.py"))
    elif change == "mode":
        module.chmod(0o755)
    elif change == "dockerfile":
        dockerfile = root / "services" / "burn" / "Dockerfile"
        dockerfile.write_text(dockerfile.read_text() + "LABEL x=y\n")
    else:
        (root / "uv.lock").write_text((root / "uv.lock").read_text() + "\n")
    assert inputs_hash(root, BURN, "sha256:base", ARGS) != before


def test_what_the_build_context_leaves_out_does_not_change_the_hash(context: Path, tmp_path: Path) -> None:
    root = fresh(context, tmp_path)
    before = inputs_hash(root, BURN, "sha256:base", ARGS)
    tests = root / "services" / "burn" / "tests"
    tests.mkdir(exist_ok=True)
    (tests / "test_new.py").write_text("def test_x() -> None: ...\n")
    (root / "README.md").write_text("not in the context\n")
    assert inputs_hash(root, BURN, "sha256:base", ARGS) == before


def test_another_packages_sources_do_not_change_the_hash_but_its_manifest_and_a_dependency_do(
        context: Path, tmp_path: Path) -> None:
    """burn runs with ig-common and ig-proto only: an edit to the policy service or the tools rebuilds no burn
    image; an edit to ig-common, or to any member's pyproject.toml (uv reads them all), does."""
    root = fresh(context, tmp_path)
    before = inputs_hash(root, BURN, "sha256:base", ARGS)
    for elsewhere in ("services/policy/src/ig_policy/app.py", "tools/infra/src/ig_infra/cli.py"):
        (root / elsewhere).parent.mkdir(parents=True, exist_ok=True)
        (root / elsewhere).write_text("# an edit outside burn's packages\n")
    assert inputs_hash(root, BURN, "sha256:base", ARGS) == before
    common = root / "libs" / "ig-common" / "src" / "ig_common" / "settings.py"
    common.write_text(common.read_text() + "\n# changed\n")
    assert inputs_hash(root, BURN, "sha256:base", ARGS) != before
    root = fresh(context, tmp_path / "second")
    manifest = root / "services" / "policy" / "pyproject.toml"
    manifest.write_text(manifest.read_text() + "\n")
    assert inputs_hash(root, BURN, "sha256:base", ARGS) != before


def test_another_base_or_build_argument_changes_the_hash(context: Path) -> None:
    before = inputs_hash(context, BURN, "sha256:base", ARGS)
    assert inputs_hash(context, BURN, "sha256:other-base", ARGS) != before
    assert inputs_hash(context, BURN, "sha256:base", {**ARGS, "SOURCE_DATE_EPOCH": "1"}) != before
    assert inputs_hash(REPO_ROOT, by_name("policy"), "sha256:base", ARGS) != \
        inputs_hash(REPO_ROOT, BURN, "sha256:base", ARGS)  # its own Dockerfile and sources


def test_the_release_subjects_are_the_images_pods_run_by_manifest_digest_not_the_base(tmp_path: Path) -> None:
    from ig_evidence.domain.provenance import parse_subjects
    from ig_k8s.images import BASE_IMAGE, write_release_subjects

    report: dict[str, object] = {
        BASE_IMAGE: {"digest": "sha256:" + "0" * 64},
        "localhost/ig/policy:dev": {"digest": "sha256:" + "a" * 64, "size_bytes": 1},
        "localhost/ig/opa:1.22.3-static": {"digest": "sha256:" + "b" * 64},
    }
    written = write_release_subjects(report, tmp_path / "subjects.json")
    # What ig-evidence build --subjects reads, read by its own parser.
    subjects = parse_subjects(json.loads(written.read_text()))
    assert [(s.name, s.sha256) for s in subjects] == [("localhost/ig/opa:1.22.3-static", "b" * 64),
                                                      ("localhost/ig/policy:dev", "a" * 64)]


def test_an_image_without_a_manifest_digest_cannot_be_attested() -> None:
    from ig_infra.process import InfraError
    from ig_k8s.images import release_subjects

    with pytest.raises(InfraError, match="localhost/ig/burn:dev: its archive names no manifest digest"):
        release_subjects({"localhost/ig/burn:dev": {"digest": None}})
