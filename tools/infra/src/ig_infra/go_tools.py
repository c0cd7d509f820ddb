"""Build Go tools from the Go module proxy into ``<cache>/<name>-<version>/bin`` once."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

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


# Modules whose go.mod has exclude/replace directives refuse ``go install pkg@version`` (and one whose version list
# the proxy refuses); they are built inside their own (downloaded, checksum-verified) module, so those directives
# apply as upstream intends.
BUILD_AS_MAIN_MODULE: frozenset[str] = frozenset({"prometheus", "promtool", "pushgateway"})


def go_build_in_module(cache: Path, module: str, version: str, binary: str, package: str) -> Path:
    """``go mod download module@version`` then ``go build ./package`` inside it; built only when missing."""
    target = cache / f"{binary}-{version}" / "bin" / binary
    if target.exists():
        return target
    require("go")
    target.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CGO_ENABLED": "0"}
    download = subprocess.run(["go", "mod", "download", "-json", f"{module}@{version}"], capture_output=True,
                              text=True, env=env, cwd=target.parent)
    if download.returncode != 0:
        raise InfraError(f"go mod download {module}@{version} failed:\n{download.stderr[-3000:]}")
    source = json.loads(download.stdout)["Dir"]
    print(f"  building {binary} {version} with go build (first time only) ...", flush=True)
    args = ["go", "build", "-trimpath", "-o", str(target), f"./{package}"]
    result = subprocess.run(args, capture_output=True, text=True, env=env, cwd=source)
    if result.returncode != 0 or not target.exists():
        raise InfraError(f"{' '.join(args)} in {source} failed:\n{result.stderr[-3000:]}")
    return target


def tool_path(cache: Path, name: str) -> Path:
    if name not in TOOLS:
        raise InfraError(f"unknown tool {name!r}; known: {', '.join(sorted(TOOLS))}")
    module, version, package = TOOLS[name]
    if name == "dex":  # its go.mod needs a patch before it builds; the recipe lives with the component
        from ig_infra.components.dex import dex_binary

        return dex_binary(cache)
    if name in BUILD_AS_MAIN_MODULE:
        return go_build_in_module(cache, module, version, name, package)
    return go_install(cache, module, version, name, package)
