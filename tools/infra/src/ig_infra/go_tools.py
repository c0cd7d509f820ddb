"""Build Go tools from the Go module proxy into ``<cache>/<name>-<version>/bin`` once."""

from __future__ import annotations

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
}


def tool_path(cache: Path, name: str) -> Path:
    if name not in TOOLS:
        raise InfraError(f"unknown tool {name!r}; known: {', '.join(sorted(TOOLS))}")
    module, version, package = TOOLS[name]
    return go_install(cache, module, version, name, package)
