"""Images built here, without a registry: a Python base from Debian packages (mmdebstrap bookworm + python3.11,
committed as an OCI image with buildah), the sandbox (pause) image, and the service images from the generated
Dockerfiles (buildah, the base passed as PYTHON_BASE). Each is exported as an OCI archive and imported into a node's
containerd (``ctr -n k8s.io images import``); nothing is ever pulled.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from ig_infra.paths import REPO_ROOT, Paths
from ig_infra.prereqs import apt_install
from ig_infra.process import InfraError

from ig_k8s.suite import ServiceImage

if TYPE_CHECKING:
    from ig_k8s.node import RealNode
    from ig_k8s.node_build import NodeBinaries

DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# python as `python` with its venv module (uv comes from its wheel in a venv), CA roots, groupadd/useradd.
BASE_PACKAGES = ("python3.11", "python3.11-venv", "python-is-python3", "ca-certificates", "passwd")
BASE_IMAGE = "localhost/ig/python-base:3.11-bookworm"
BUILD_PACKAGES = {"mmdebstrap": "/usr/bin/mmdebstrap", "buildah": "/usr/bin/buildah", "runc": "/usr/sbin/runc"}
# The runtime of a Dockerfile's RUN steps, named rather than buildah's default: Debian's buildah brings crun when
# no runtime is installed yet, and crun refuses this cgroup v1 ("hybrid") host ("cgroups in hybrid mode not
# supported"), seen on a fresh machine.
BUILD_RUNTIME = BUILD_PACKAGES["runc"]
# The host's CA bundle, mounted into the build steps only (pip and uv reach PyPI through this machine's TLS proxy).
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


@dataclass(frozen=True)
class BuiltImage:
    name: str
    archive: Path
    seconds: float  # 0 when it was already built
    # Service images (image_cache.py): "built", "tagged" (the same inputs built under another tag) or "cached";
    # the build-inputs hash; the seconds it took to decide (hashing the inputs) and export when nothing was built.
    cache: str = ""
    inputs: str = ""
    check_seconds: float = 0.0

    @property
    def size_bytes(self) -> int:
        """The OCI archive's size: what is shipped to a node and imported."""
        return self.archive.stat().st_size


def _run(command: list[str], what: str, timeout: float = 1800) -> str:
    result = subprocess.run(["nice", "-n", "10", *command], capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise InfraError(f"{what} failed ({' '.join(command[:3])} ...):\n{result.stdout[-2000:]}"
                         f"{result.stderr[-3000:]}")
    return result.stdout


def ensure_build_tools() -> None:
    missing = [package for package, marker in BUILD_PACKAGES.items() if not Path(marker).exists()]
    if missing:
        apt_install(*missing)


def image_exists(name: str) -> bool:
    # On a fresh machine buildah is not installed yet (ensure_build_tools installs it before any build): then no
    # image exists, rather than a FileNotFoundError before the install.
    if not Path(BUILD_PACKAGES["buildah"]).exists():
        return False
    return subprocess.run(["buildah", "inspect", "--type", "image", name], capture_output=True).returncode == 0


def _export(name: str, archive: Path) -> Path:
    archive.parent.mkdir(parents=True, exist_ok=True)
    archive.unlink(missing_ok=True)
    _run(["buildah", "push", "--quiet", name, f"oci-archive:{archive}:{name}"], f"exporting {name}")
    return archive


def images_dir(paths: Paths) -> Path:
    return paths.component_dir("k8s") / "images"


def base_image(paths: Paths) -> BuiltImage:
    """The Python base from Debian packages (its root filesystem tarball is cached; rebuilt only when missing)."""
    archive = images_dir(paths) / "python-base.oci.tar"
    if image_exists(BASE_IMAGE) and archive.exists():
        return BuiltImage(BASE_IMAGE, archive, 0.0)
    ensure_build_tools()
    started = time.monotonic()
    rootfs = paths.cache / f"ig-python-base-{DEBIAN_SUITE}" / "rootfs.tar"
    if not rootfs.exists():
        rootfs.parent.mkdir(parents=True, exist_ok=True)
        print(f"  making the Python base from Debian {DEBIAN_SUITE} packages with mmdebstrap ...", flush=True)
        partial = rootfs.with_suffix(".partial.tar")
        _run(["mmdebstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
              *(f"--dpkgopt=path-exclude=/usr/share/{folder}/*" for folder in ("doc", "man", "locale")),
              DEBIAN_SUITE, str(partial), DEBIAN_MIRROR], "mmdebstrap")
        partial.rename(rootfs)
    container = _run(["buildah", "from", "scratch"], "buildah from scratch").strip()
    _run(["buildah", "add", "--quiet", container, str(rootfs), "/"], "buildah add")
    _run(["buildah", "config", "--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
          "--env", "LANG=C.UTF-8", "--cmd", '["python3"]', container], "buildah config")
    _run(["buildah", "commit", "--quiet", "--rm", container, BASE_IMAGE], "buildah commit")
    _export(BASE_IMAGE, archive)
    return BuiltImage(BASE_IMAGE, archive, time.monotonic() - started)


def pause_image(binaries: NodeBinaries, paths: Paths | None = None) -> BuiltImage:
    """The sandbox image: one static file."""
    from ig_k8s.node import PAUSE_IMAGE

    archive = images_dir(paths or Paths.from_environment()) / "pause.oci.tar"
    if image_exists(PAUSE_IMAGE) and archive.exists():
        return BuiltImage(PAUSE_IMAGE, archive, 0.0)
    ensure_build_tools()
    started = time.monotonic()
    container = _run(["buildah", "from", "scratch"], "buildah from scratch").strip()
    _run(["buildah", "copy", "--quiet", "--chmod", "0755", container, str(binaries.pause), "/pause"], "buildah copy")
    _run(["buildah", "config", "--entrypoint", '["/pause"]', "--user", "65535:65535", container], "buildah config")
    _run(["buildah", "commit", "--quiet", "--rm", container, PAUSE_IMAGE], "buildah commit")
    _export(PAUSE_IMAGE, archive)
    return BuiltImage(PAUSE_IMAGE, archive, time.monotonic() - started)


OPA_IMAGE = "localhost/ig/opa:1.22.3-static"


def opa_image(paths: Paths) -> BuiltImage:
    """The policy chart's OPA sidecar without a registry: the static OPA the suite already builds (ig-infra's
    go_tools, v1.22.3, the version of the chart's default tag) as the one file of a scratch image."""
    from ig_infra.go_tools import tool_path

    archive = images_dir(paths) / "opa.oci.tar"
    if image_exists(OPA_IMAGE) and archive.exists():
        return BuiltImage(OPA_IMAGE, archive, 0.0)
    ensure_build_tools()
    started = time.monotonic()
    binary = tool_path(paths.cache, "opa")
    container = _run(["buildah", "from", "scratch"], "buildah from scratch").strip()
    _run(["buildah", "copy", "--quiet", "--chmod", "0755", container, str(binary), "/opa"], "buildah copy")
    _run(["buildah", "config", "--entrypoint", '["/opa"]', "--user", "10001:10001", container], "buildah config")
    _run(["buildah", "commit", "--quiet", "--rm", container, OPA_IMAGE], "buildah commit")
    _export(OPA_IMAGE, archive)
    return BuiltImage(OPA_IMAGE, archive, time.monotonic() - started)


def service_image(service: ServiceImage, tag: str, paths: Paths, root: Path = REPO_ROOT,
                  force: bool = False) -> BuiltImage:
    """``buildah bud`` of the service's generated Dockerfile over the repository (``root``: a copy of it, for the
    tests), on the Debian base; skipped when an image already carries the hash of these build inputs
    (image_cache.py), and then not exported again either when the archive beside it came from the same inputs.
    ``force``: build even when the hash says the image is there (the reproducibility test)."""
    from ig_k8s.image_cache import (
        INPUTS_LABEL,
        SOURCE_DATE_EPOCH,
        archive_inputs_file,
        image_id,
        image_inputs,
        image_with_inputs,
        inputs_hash,
    )

    base = base_image(paths)
    name = f"localhost/{service.image}:{tag}"
    archive = images_dir(paths) / f"{service.name}-{tag}.oci.tar"
    started = time.monotonic()
    build_args = {"PYTHON_BASE": base.name, "SOURCE_DATE_EPOCH": str(SOURCE_DATE_EPOCH)}
    volumes = []
    if HOST_CA_BUNDLE.exists():
        volumes = ["--volume", f"{HOST_CA_BUNDLE}:/run/host-ca.crt:ro"]
        build_args |= {"PIP_CERT": "/run/host-ca.crt", "SSL_CERT_FILE": "/run/host-ca.crt"}
    ensure_build_tools()
    inputs = inputs_hash(root, service, image_id(base.name) or "", build_args)
    dockerfile = root / "services" / service.name / "Dockerfile"
    cache = "cached"
    if force or image_inputs(name) != inputs:
        same = None if force else image_with_inputs(inputs)
        if same is not None:
            # Built already under another tag (`make k8s-up`'s dev, the tests' node-test): the same bytes.
            _run(["buildah", "tag", same, name], f"tagging {name}")
            cache = "tagged"
        else:
            print(f"  building {name} with buildah on {base.name} ...", flush=True)
            # --no-cache: see image_cache.py (the layer cache ignores --timestamp; what it saved was pip's uv).
            _run(["buildah", "bud", "--quiet", "--runtime", BUILD_RUNTIME, "--no-cache", "--network", "host",
                  "--pull=never", "--timestamp", str(SOURCE_DATE_EPOCH), "--label", f"{INPUTS_LABEL}={inputs}",
                  "--ignorefile", str(dockerfile.with_name("Dockerfile.dockerignore")), "-f", str(dockerfile),
                  *(arg for key, value in build_args.items() for arg in ("--build-arg", f"{key}={value}")),
                  *volumes, "-t", name, str(root)], f"building {name}")
            cache = "built"
    stamp = archive_inputs_file(archive)
    if cache != "cached" or not archive.exists() or not stamp.exists() or stamp.read_text() != inputs:
        stamp.unlink(missing_ok=True)
        _export(name, archive)
        stamp.write_text(inputs)
    seconds = time.monotonic() - started
    return BuiltImage(name, archive, seconds if cache == "built" else 0.0, cache=cache, inputs=inputs,
                      check_seconds=seconds)


def prune_untagged_images() -> None:
    """Remove the images no tag names any more: a rebuild after any change to the repository (the build context)
    makes new layers and leaves the previous image and its build stage untagged, about 1 GB per service image
    (42 GB of them here after a day of runs, until the disk was short). What goes with them is buildah's layer cache
    of this build's stages, which costs little: the layer cache cleared, `make k8s-up` took 172 s against 143 s
    warm, uv's downloads being kept in buildah's cache mount."""
    _run(["buildah", "rmi", "--prune"], "removing untagged images")


def import_image(node: RealNode, binaries: NodeBinaries, image: BuiltImage) -> str:
    """Load an image archive into the node's containerd (k8s.io namespace, unpacked for its snapshotter); returns
    the image's manifest digest as containerd records it."""
    imported = node.ctr(binaries, "images", "import", str(image.archive))
    if imported.returncode != 0:
        raise InfraError(f"ctr images import {image.archive} into {node.region} failed:\n{imported.stderr[-2000:]}")
    return image_digest(node, binaries, image.name)


def image_digest(node: RealNode, binaries: NodeBinaries, name: str) -> str:
    listed = node.ctr(binaries, "images", "list", f"name=={name}")
    for line in listed.stdout.splitlines()[1:]:
        fields = line.split()
        if fields and fields[0] == name:
            return next(field for field in fields if field.startswith("sha256:"))
    raise InfraError(f"{name} is not in {node.region}'s containerd after the import:\n{listed.stdout}")


def node_digest(node: RealNode, binaries: NodeBinaries, name: str) -> str | None:
    """The manifest digest the node's containerd records for ``name``, None when it has no such image."""
    try:
        return image_digest(node, binaries, name)
    except InfraError:
        return None


def build_and_load(services: list[str], tag: str, paths: Paths) -> dict[str, object]:
    """Build the base and the named service images (and OPA's for the policy service's sidecar), import each into
    every running real node that does not hold it already; return the figures (seconds, sizes, whether each was
    built, tagged or cached) and each image's digest per node (the subjects a release's provenance names)."""
    from ig_k8s.image_cache import archive_manifest_digest
    from ig_k8s.node import RealNode
    from ig_k8s.node_build import NodeBinaries
    from ig_k8s.suite import REGIONS, by_name, in_parallel

    base = base_image(paths)
    built = [base, *(service_image(by_name(name), tag, paths) for name in services)]
    if "policy" in services:
        built.append(opa_image(paths))
    # Only a build or a new tag can leave images untagged; the prune costs a few seconds even when it finds none.
    if any(image.cache in ("built", "tagged") for image in built):
        prune_untagged_images()
    nodes = [node for node in (RealNode(region, paths) for region in REGIONS) if node.running()]
    binaries = NodeBinaries.cached(paths) if nodes else None
    report: dict[str, object] = {}
    entries: dict[str, dict[str, object]] = {}
    for image in built:
        entry: dict[str, object] = {"build_seconds": round(image.seconds, 1), "size_bytes": image.size_bytes,
                                    "digest": archive_manifest_digest(image.archive)}
        if image.cache:
            entry |= {"cache": image.cache, "inputs": image.inputs, "check_seconds": round(image.check_seconds, 1)}
        report[image.name] = entries[image.name] = entry
    if binaries is None:
        return report

    def load(node: RealNode) -> dict[str, tuple[str, float]]:
        """Every image into one node, those it holds already skipped (a node that kept its containerd root since
        the last import holds these very bytes)."""
        assert binaries is not None
        done = {}
        for image in built:
            started = time.monotonic()
            wanted = archive_manifest_digest(image.archive)
            held = node_digest(node, binaries, image.name)
            digest = held if held and held == wanted else import_image(node, binaries, image)
            done[image.name] = (digest, round(time.monotonic() - started, 1))
        return done

    # A fresh node unpacks every layer (after `make k8s-down`, ~100 s for the two nodes one after the other): both
    # nodes at once.
    loaded = in_parallel({node.region: partial(load, node) for node in nodes})
    for image in built:
        entry = entries[image.name]
        entry["digests"] = {region: loaded[region][image.name][0] for region in loaded}
        for region in loaded:
            entry[f"import_seconds_{region}"] = loaded[region][image.name][1]
    return report


def release_subjects(report: dict[str, object]) -> list[dict[str, object]]:
    """The images a release runs (every service image and OPA's sidecar; not the base they are built on), as the
    in-toto subjects `ig-evidence build --subjects` attests in the release's provenance: name and manifest digest,
    the digest each node's containerd records (and the kubelet reports as the container's imageID)."""
    subjects = []
    for name, entry in sorted(report.items()):
        assert isinstance(entry, dict)
        digest = str(entry["digest"] or "")
        if name == BASE_IMAGE:
            continue
        if not digest.startswith("sha256:"):
            raise InfraError(f"{name}: its archive names no manifest digest, so it cannot be attested")
        subjects.append({"name": name, "digest": {"sha256": digest.removeprefix("sha256:")}})
    return subjects


def subjects_path(paths: Paths, tag: str) -> Path:
    """Where `make k8s-up` (``RealSuite.up``) leaves the subjects of the images it built under ``tag``."""
    return images_dir(paths) / f"release-subjects-{tag}.json"


def write_release_subjects(report: dict[str, object], path: Path) -> Path:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(release_subjects(report), indent=2) + "\n")
    return path
