"""Service images rebuilt only when their inputs changed, with stable digests (tools/k8s/src/ig_k8s/image_cache.py),
on buildah and the real nodes: building again with unchanged inputs builds nothing, imports nothing and keeps the
digest; a changed input (a copy of the build context with one source line more) rebuilds, and building those same
inputs again from nothing gives the same digest. Nothing skips.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from ig_infra.paths import REPO_ROOT
from ig_k8s.dockerfiles import mirror_build_context
from ig_k8s.image_cache import archive_inputs_file, archive_manifest_digest
from ig_k8s.images import build_and_load, images_dir, service_image
from ig_k8s.real_suite import RealSuite
from ig_k8s.suite import REGIONS, by_name

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

BURN = by_name("burn")
PROBE_TAG = "cache-probe"


def test_unchanged_inputs_build_nothing_import_nothing_and_keep_the_digest(
        suite: RealSuite, image_tag: str, images: dict[str, Any]) -> None:
    name = f"localhost/{BURN.image}:{image_tag}"
    report = build_and_load([BURN.name], image_tag, suite.paths)
    entry = report[name]
    assert isinstance(entry, dict)
    assert entry["cache"] == "cached" and entry["build_seconds"] == 0, entry
    # What each node holds is what the set-up imported: the same manifest digest, not imported again.
    assert entry["digests"] == images[name]["digests"], (entry, images[name])
    assert set(entry["digests"]) == set(REGIONS)
    archive = images_dir(suite.paths) / f"{BURN.name}-{image_tag}.oci.tar"
    assert {archive_manifest_digest(archive)} == set(entry["digests"].values())


def test_a_changed_input_rebuilds_and_the_same_inputs_built_again_give_the_same_digest(
        suite: RealSuite, image_tag: str, images: dict[str, Any], tmp_path: Path) -> None:
    context = tmp_path / "context"
    mirror_build_context(REPO_ROOT, context, BURN)
    module = context / "services" / "burn" / "src" / "ig_burn" / "app.py"
    module.write_text(module.read_text() + "\n# a changed input of the image build\n")
    unchanged_digest = images[f"localhost/{BURN.image}:{image_tag}"]["digests"][REGIONS[0]]
    probe = f"localhost/{BURN.image}:{PROBE_TAG}"
    try:
        changed = service_image(BURN, PROBE_TAG, suite.paths, root=context)
        assert changed.cache == "built" and changed.seconds > 0
        digest = archive_manifest_digest(changed.archive)
        assert digest is not None and digest != unchanged_digest
        again = service_image(BURN, PROBE_TAG, suite.paths, root=context)
        assert (again.cache, again.inputs, archive_manifest_digest(again.archive)) == ("cached", changed.inputs, digest)
        # Reproducible: every step run again (--no-cache) on the same inputs, the same bytes.
        rebuilt = service_image(BURN, PROBE_TAG, suite.paths, root=context, force=True)
        assert rebuilt.cache == "built" and archive_manifest_digest(rebuilt.archive) == digest
    finally:
        subprocess.run(["buildah", "rmi", "--force", probe], capture_output=True)
        archive = images_dir(suite.paths) / f"{BURN.name}-{PROBE_TAG}.oci.tar"
        for path in (archive, archive_inputs_file(archive)):
            path.unlink(missing_ok=True)
