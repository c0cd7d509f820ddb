"""Service images rebuilt only when what goes into them changed, and the same inputs giving the same digest.

Before this, every `make k8s-up` ran ``buildah bud`` for all five services (most of its time): buildah's layer
cache did not survive the untagged-image prune that keeps its storage in bounds, so ``uv sync`` ran again, and every
layer and the config carried the build's own time, so each build had a new digest even for the same sources.

Now each service image carries a label with a content hash of its build inputs (``inputs_hash``): the Dockerfile and
its ignore file, every file of the build context (path, mode, content: the workspace's manifests and the sources of
the packages the service runs with, dockerfiles.render_dockerignore), the base image's ID, the build arguments and
the build's own settings below. A build whose hash an image already carries is skipped (or, when the image is there
under another tag, e.g. `make k8s-up`'s ``dev`` and the test package's ``node-test``, tagged again: same bytes). The
build that does run is made reproducible (``--timestamp 0`` for the config and every layer's file times,
``SOURCE_DATE_EPOCH`` for the wheels uv builds and the bytecode it compiles) and runs every step (``--no-cache``):
buildah's layer cache does not key on ``--timestamp``, and reused a ``useradd`` layer an earlier build had made with
the day's file times, so a rebuild of the same inputs got another digest (seen). A changed input changes the COPY
layers and so reruns ``uv sync``, the step that costs, whatever the cache; uv's downloads stay in its cache mount. So
a changed input rebuilds, and the same inputs built again with the same base give the same digest
(tools/k8s/README.md says how far that was checked).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

from ig_k8s.dockerfiles import build_context_files
from ig_k8s.suite import ServiceImage

INPUTS_LABEL = "dev.maestro.build-inputs"
# Everything of the build that is not a file of the context: changing any of these must rebuild. Bump the version
# when the way images are built changes in a way the values below do not show.
SOURCE_DATE_EPOCH = 0
BUILD_SETTINGS = {"version": 1, "timestamp": SOURCE_DATE_EPOCH, "layer_cache": False}


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def inputs_hash(root: Path, service: ServiceImage, base_id: str, build_args: dict[str, str]) -> str:
    """sha256 over every input of the service's image build (see the module docstring); hex."""
    digest = hashlib.sha256()

    def add(kind: str, name: str, value: str) -> None:
        # One line per input, with its kind and name: a file moved or renamed changes the hash, not just its bytes.
        digest.update(f"{kind}\0{name}\0{value}\n".encode())

    add("settings", "build", json.dumps(BUILD_SETTINGS, sort_keys=True))
    add("base", "id", base_id)
    for key in sorted(build_args):
        add("arg", key, build_args[key])
    dockerfile = root / "services" / service.name / "Dockerfile"
    for extra in (dockerfile, dockerfile.with_name("Dockerfile.dockerignore")):
        add("dockerfile", extra.relative_to(root).as_posix(), _file_digest(extra))
    for path in build_context_files(root, service):
        mode = "x" if path.stat().st_mode & 0o111 else "-"
        add("context", path.relative_to(root).as_posix(), f"{mode} {_file_digest(path)}")
    return digest.hexdigest()


def image_id(name: str) -> str | None:
    """The local image's ID (its config digest), None when buildah has no such image."""
    result = subprocess.run(["buildah", "inspect", "--type", "image", "--format", "{{.FromImageID}}", name],
                            capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 and result.stdout.strip() else None


def image_inputs(name: str) -> str | None:
    """The build-inputs hash the local image carries, None when it has none (built before this module) or is gone.
    Read from the whole JSON: buildah 1.28's ``--format`` has no ``json`` function."""
    result = subprocess.run(["buildah", "inspect", "--type", "image", name], capture_output=True, text=True)
    if result.returncode != 0:
        return None
    labels = (json.loads(result.stdout).get("OCIv1") or {}).get("config", {}).get("Labels") or {}
    value = labels.get(INPUTS_LABEL)
    return str(value) if value else None


def image_with_inputs(inputs: str) -> str | None:
    """The ID of a tagged local image carrying this build-inputs hash (whatever its tag), None when there is none.
    Tagged only: the label is on a build's intermediate stage images too (those of a ``--layers`` build)."""
    result = subprocess.run(["buildah", "images", "--noheading", "--no-trunc", "--format", "{{.ID}} {{.Name}}",
                             "--filter", f"label={INPUTS_LABEL}={inputs}"], capture_output=True, text=True)
    found = [line.split()[0] for line in result.stdout.splitlines()
             if len(line.split()) == 2 and line.split()[1] != "<none>"]
    return found[0] if result.returncode == 0 and found else None


def archive_inputs_file(archive: Path) -> Path:
    """Beside an exported archive: the build-inputs hash it was exported from (a half-written archive has none)."""
    return archive.with_name(archive.name + ".inputs")


def archive_manifest_digest(archive: Path) -> str | None:
    """The manifest digest an OCI archive's index names: what a node's containerd records after the import."""
    import tarfile

    try:
        with tarfile.open(archive) as tar:
            member = tar.extractfile("index.json")
            index = json.loads(member.read()) if member else {}
    except (OSError, tarfile.TarError, KeyError, ValueError):
        return None
    manifests = index.get("manifests") or [{}]
    digest = manifests[0].get("digest")
    return str(digest) if digest else None
