"""Build Go tools from the Go module proxy into ``<cache>/<name>-<version>/bin`` once."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path

from ig_infra.paths import REPO_ROOT
from ig_infra.prereqs import require
from ig_infra.process import InfraError


def go_install(cache: Path, module: str, version: str, binary: str, package: str = "",
               env: dict[str, str] | None = None, tags: str = "") -> Path:
    """``go install module/package@version``; returns the binary's path (built only when missing)."""
    bin_dir = cache / f"{binary}-{version}" / "bin"
    target = bin_dir / binary
    if target.exists():
        return target
    require("go")
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = f"{module}/{package}".rstrip("/")
    args = ["go", "install", "-trimpath", *(["-tags", tags] if tags else []), f"{path}@{version}"]
    print(f"  building {binary} {version} with go install (first time only) ...", flush=True)
    result = subprocess.run(args, capture_output=True, text=True,
                            env={**os.environ, "GOBIN": str(bin_dir), "CGO_ENABLED": "0", **(env or {})})
    if result.returncode != 0 or not target.exists():
        raise InfraError(f"{' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return target


# Go tools the project builds on demand: name -> (module, version, package path inside the module).
TOOLS: dict[str, tuple[str, str, str]] = {
    "opa": ("github.com/open-policy-agent/opa", "v1.22.3", ""),
    "buf": ("github.com/bufbuild/buf", "v1.75.0", "cmd/buf"),
    "helm": ("helm.sh/helm/v3", "v3.22.0", "cmd/helm"),
    "kubeconform": ("github.com/yannh/kubeconform", "v0.8.0", "cmd/kubeconform"),
    "kwok": ("sigs.k8s.io/kwok", "v0.8.0", "cmd/kwok"),
    # Dex tags v2.x without a /v2 module path, so the proxy only serves it by pseudo-version (this one is v2.41.1).
    "dex": ("github.com/dexidp/dex", "v0.0.0-20240807174518-43956db7fd75", "cmd/dex"),
    "prometheus": ("github.com/prometheus/prometheus", "v0.309.1", "cmd/prometheus"),
    "promtool": ("github.com/prometheus/prometheus", "v0.309.1", "cmd/promtool"),
    "cosign": ("github.com/sigstore/cosign/v2", "v2.6.5", "cmd/cosign"),
    # The proxy serves this version but refuses the module's version list, which `go install` reads for
    # deprecation notices: it is built inside its downloaded module instead (BUILD_AS_MAIN_MODULE).
    "pushgateway": ("github.com/prometheus/pushgateway", "v1.11.1", ""),
}


# Go programs of this repository (name -> directory): each is a module of its own whose go.mod and go.sum pin what it
# takes from the Go module proxy; built with ``go build`` there, again whenever its sources change. tlog-verify checks
# the evidence ledger's tiles with golang.org/x/mod's sumdb/tlog and sumdb/note, an implementation not our own.
LOCAL_TOOLS: dict[str, str] = {"tlog-verify": "tools/tlog-verify"}


def _local_binary(cache: Path, name: str) -> Path:
    source = REPO_ROOT / LOCAL_TOOLS[name]
    digest = hashlib.sha256()
    for path in sorted(p for p in source.rglob("*") if p.is_file() and p.name.endswith((".go", "go.mod", "go.sum"))):
        digest.update(f"{path.relative_to(source)}\0".encode() + path.read_bytes() + b"\0")
    return cache / f"{name}-{digest.hexdigest()[:12]}" / "bin" / name


def local_build(cache: Path, name: str) -> Path:
    """``go build`` of a program of this repository (LOCAL_TOOLS); returns the binary's path (built when missing)."""
    target = _local_binary(cache, name)
    if target.exists():
        return target
    require("go")
    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"  building {name} from {LOCAL_TOOLS[name]} with go build ...", flush=True)
    args = ["go", "build", "-trimpath", "-mod=readonly", "-o", str(target), "."]
    result = subprocess.run(args, capture_output=True, text=True, cwd=REPO_ROOT / LOCAL_TOOLS[name],
                            env={**os.environ, "CGO_ENABLED": "0"})
    if result.returncode != 0 or not target.exists():
        raise InfraError(f"{' '.join(args)} in {LOCAL_TOOLS[name]} failed:\n{result.stderr[-3000:]}")
    return target


# Modules whose go.mod has exclude/replace directives refuse ``go install pkg@version`` (and one whose version list
# the proxy refuses); they are built inside their own (downloaded, checksum-verified) module, so those directives
# apply as upstream intends.
BUILD_AS_MAIN_MODULE: frozenset[str] = frozenset({"prometheus", "promtool", "pushgateway"})


# Prometheus registers every service-discovery plugin of its plugins.yml through the generated plugins/plugins.go;
# trimming that list is upstream's documented way to build a smaller binary. The build keeps the discovery upstream
# always compiles in (file, http: plugins/minimum.go) and Kubernetes (each region's Prometheus finds the pods of its
# own cluster through its API server: ig_k8s.pod_infra), and leaves out the cloud SDKs (AWS, Azure, GCE ...), most of a
# cold build's work. The file is replaced in a copy of the checksum-verified module (go refuses overlays inside the
# module cache); a build with other replacements is cached apart (module_build_dir).
FILE_REPLACEMENTS: dict[str, dict[str, str]] = {
    "github.com/prometheus/prometheus": {
        "plugins/plugins.go": 'package plugins\n\nimport (\n'
                              '\t// Register kubernetes plugin.\n'
                              '\t_ "github.com/prometheus/prometheus/discovery/kubernetes"\n)\n'},
}


def module_build_dir(cache: Path, name: str) -> Path:
    """Where a tool built inside its module is cached: by version, and by the files the build replaced, so that a
    binary built from another plugin list is never taken for this one."""
    module, version, _ = TOOLS[name]
    replacements = FILE_REPLACEMENTS.get(module)
    if not replacements:
        return cache / f"{name}-{version}"
    digest = hashlib.sha256(json.dumps(replacements, sort_keys=True).encode()).hexdigest()[:8]
    return cache / f"{name}-{version}-{digest}"


def go_build_in_module(cache: Path, module: str, version: str, binary: str, package: str) -> Path:
    """``go mod download module@version`` then ``go build`` inside it; built only when missing.

    Every missing tool of the same module and version (prometheus and promtool) is built by the same ``go build``:
    they share most packages, and their links run side by side.
    """
    target = module_build_dir(cache, binary) / "bin" / binary
    if target.exists():
        return target
    require("go")
    siblings = {name: package_path for name, (mod, ver, package_path) in TOOLS.items()
                if name in BUILD_AS_MAIN_MODULE and (mod, ver) == (module, version)}
    missing = {name: package_path for name, package_path in {binary: package, **siblings}.items()
               if not (module_build_dir(cache, name) / "bin" / name).exists()}
    target.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CGO_ENABLED": "0"}
    download = subprocess.run(["go", "mod", "download", "-json", f"{module}@{version}"], capture_output=True,
                              text=True, env=env, cwd=target.parent)
    if download.returncode != 0:
        raise InfraError(f"go mod download {module}@{version} failed:\n{download.stderr[-3000:]}")
    source = Path(json.loads(download.stdout)["Dir"])
    print(f"  building {', '.join(missing)} {version} with go build (first time only) ...", flush=True)
    with tempfile.TemporaryDirectory(prefix="go-build-") as work:
        tree = _writable_copy(source, Path(work) / "src", FILE_REPLACEMENTS.get(module, {}))
        out_dir = Path(work) / "bin"
        out_dir.mkdir()
        args = ["go", "build", "-trimpath", "-o", f"{out_dir}/",
                *(f"./{package_path}" for package_path in missing.values())]
        result = subprocess.run(args, capture_output=True, text=True, env=env, cwd=tree)
        if result.returncode != 0:
            raise InfraError(f"{' '.join(args)} in {module}@{version} failed:\n{result.stderr[-3000:]}")
        for name, package_path in missing.items():
            built = out_dir / (package_path.rstrip("/").rsplit("/", 1)[-1] if package_path else module.rsplit("/")[-1])
            destination = module_build_dir(cache, name) / "bin" / name
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(built, destination)
    if not target.exists():
        raise InfraError(f"go build in {module}@{version} did not produce {binary}")
    return target


def _writable_copy(source: Path, tree: Path, replacements: dict[str, str]) -> Path:
    """Copy a (read-only) downloaded module to ``tree`` and replace the given files' contents."""
    shutil.copytree(source, tree)
    for path in tree.rglob("*"):
        path.chmod(path.stat().st_mode | 0o200)
    for relative, content in replacements.items():
        (tree / relative).write_text(content)
    return tree


# Tools whose upstream project publishes the same release binary as a PyPI wheel (tool -> distribution, pinned in
# tools/infra/pyproject.toml to the TOOLS version): `uv sync` installs them in seconds instead of a Go build.
FROM_PYPI: dict[str, str] = {"buf": "buf-bin"}


def pypi_binary(name: str) -> Path | None:
    """The wheel-installed binary beside this interpreter when its distribution has the pinned version."""
    distribution, (_, version, _) = FROM_PYPI.get(name), TOOLS[name]
    if distribution is None:
        return None
    try:
        installed = metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None
    binary = Path(sys.executable).parent / name
    return binary if installed == version.removeprefix("v") and binary.exists() else None


def tool_path(cache: Path, name: str) -> Path:
    if name in LOCAL_TOOLS:
        return local_build(cache, name)
    if name not in TOOLS:
        raise InfraError(f"unknown tool {name!r}; known: {', '.join(sorted([*TOOLS, *LOCAL_TOOLS]))}")
    module, version, package = TOOLS[name]
    wheel_binary = pypi_binary(name)
    if wheel_binary is not None:
        return wheel_binary
    if name == "dex":  # its go.mod needs a patch before it builds; the recipe lives with the component
        from ig_infra.components.dex import dex_binary

        return dex_binary(cache)
    if name in BUILD_AS_MAIN_MODULE:
        return go_build_in_module(cache, module, version, name, package)
    return go_install(cache, module, version, name, package)


# The longest cold builds (measured on the 2-core machine) start first, so the short ones fill in beside them.
LONGEST_BUILDS_FIRST: tuple[str, ...] = ("cosign", "prometheus", "dex", "opa", "helm")


def build_units(names: list[str] | None = None) -> list[str]:
    """One tool name per build (of ``names``, default all), longest first: tools built by the same ``go build``
    (same module and version) appear once."""
    unknown = sorted(set(names or []) - set(TOOLS) - set(LOCAL_TOOLS))
    if unknown:
        raise InfraError(f"unknown tool(s) {', '.join(unknown)}; known: {', '.join(sorted([*TOOLS, *LOCAL_TOOLS]))}")
    seen: set[tuple[str, str]] = set()
    units = []
    for name, (module, version, _) in TOOLS.items():
        if names and name not in names:
            continue
        if name in BUILD_AS_MAIN_MODULE:
            if (module, version) in seen:
                continue
            seen.add((module, version))
        units.append(name)
    units.extend(name for name in LOCAL_TOOLS if not names or name in names)
    first = {name: rank for rank, name in enumerate(LONGEST_BUILDS_FIRST)}
    return sorted(units, key=lambda name: first.get(name, len(first)))


def ensure_all(cache: Path, names: list[str] | None = None, workers: int = 2) -> dict[str, Path]:
    """Every tool (of ``names``, default all), built when missing, ``workers`` builds at a time: one build's
    downloads, cgo and single-threaded links fill the gaps in the other's compiling. Returns name -> path."""

    def ensure(name: str) -> None:
        started = time.monotonic()
        cached = _cached(cache, name)
        tool_path(cache, name)
        if not cached:
            print(f"  built {name} in {time.monotonic() - started:.0f}s", flush=True)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(ensure, build_units(names)))
    return {name: tool_path(cache, name) for name in [*TOOLS, *LOCAL_TOOLS] if not names or name in names}


def _cached(cache: Path, name: str) -> bool:
    if name in LOCAL_TOOLS:
        return _local_binary(cache, name).exists()
    if name in BUILD_AS_MAIN_MODULE:
        return (module_build_dir(cache, name) / "bin" / name).exists()
    return name in FROM_PYPI or (cache / f"{name}-{TOOLS[name][1]}" / "bin" / name).exists()
