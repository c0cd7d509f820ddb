"""Build kube-apiserver, kube-controller-manager and kube-scheduler from k8s.io/kubernetes via the Go module proxy.

``go install k8s.io/kubernetes/cmd/kube-apiserver@vX`` is refused: the kubernetes go.mod points its staging modules
(k8s.io/api, k8s.io/client-go, ...) at ``./staging/src/...`` with ``replace`` lines that only apply inside that
repository. A small wrapper module requires k8s.io/kubernetes and replaces every staging module with its published
``v0.<minor>.<patch>`` twin, which is exactly what the release tags of those modules are cut from.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

from ig_infra.prereqs import require
from ig_infra.process import InfraError

KUBERNETES_VERSION = "v1.37.2"
KUBE_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
# The real node's agents, built from the same module version as the control plane (kubelet and kube-proxy must not
# be newer than the kube-apiserver they register with; the same version is the simplest rule that holds).
NODE_COMMANDS = ("kubelet", "kube-proxy")

_STAGING_REPLACE = re.compile(r"^\s*(k8s\.io/[\w.-]+)\s+=>\s+\./staging/src/", re.MULTILINE)


def staging_twin_version(kubernetes_version: str) -> str:
    """v1.37.2 -> v0.37.2 (the staging modules are tagged with major 0 and the same minor/patch)."""
    match = re.fullmatch(r"v1\.(\d+)\.(\d+)(-[\w.]+)?", kubernetes_version)
    if not match:
        raise InfraError(f"not a Kubernetes release version: {kubernetes_version!r}")
    return f"v0.{match.group(1)}.{match.group(2)}{match.group(3) or ''}"


def staging_modules(kubernetes_go_mod: str) -> list[str]:
    """Module paths that k8s.io/kubernetes replaces with its own staging directories."""
    return sorted(set(_STAGING_REPLACE.findall(kubernetes_go_mod)))


def wrapper_go_mod(kubernetes_version: str, kubernetes_go_mod: str) -> str:
    go_line = re.search(r"^go (\S+)$", kubernetes_go_mod, re.MULTILINE)
    twin = staging_twin_version(kubernetes_version)
    replaces = "\n".join(f"\t{module} => {module} {twin}" for module in staging_modules(kubernetes_go_mod))
    return (f"module ig.local/kubebuild\n\ngo {go_line.group(1) if go_line else '1.24'}\n\n"
            f"require k8s.io/kubernetes {kubernetes_version}\n\nreplace (\n{replaces}\n)\n")


def _imports_file() -> str:
    imports = "\n".join(f'\t_ "k8s.io/kubernetes/cmd/{command}"' for command in (*KUBE_COMMANDS, *NODE_COMMANDS))
    return f"//go:build tools\n\npackage tools\n\nimport (\n{imports}\n)\n"


def _ldflags(version: str) -> str:
    major, minor = version.lstrip("v").split(".")[:2]
    prefix = "k8s.io/component-base/version"
    return " ".join(["-s", "-w", f"-X {prefix}.gitVersion={version}", f"-X {prefix}.gitMajor={major}",
                     f"-X {prefix}.gitMinor={minor}", f"-X {prefix}.gitTreeState=clean"])


def _go(args: list[str], cwd: Path, env: dict[str, str]) -> None:
    result = subprocess.run(["nice", "-n", "10", "go", *args], cwd=cwd, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise InfraError(f"go {' '.join(args)} failed in {cwd}:\n{result.stderr[-4000:]}")


def build_kubernetes(cache: Path, version: str = KUBERNETES_VERSION,
                     commands: tuple[str, ...] = KUBE_COMMANDS) -> dict[str, Path]:
    """Build ``commands`` (default: the control plane) once into ``<cache>/kubernetes-<version>/bin``; return
    name -> path. The node's kubelet and kube-proxy come from the same wrapper module: ``commands=NODE_COMMANDS``."""
    root = cache / f"kubernetes-{version}"
    bin_dir = root / "bin"
    targets = {command: bin_dir / command for command in commands}
    if all(path.exists() for path in targets.values()):
        return targets
    require("go", "nice")
    module_dir = root / "wrapper"
    module_dir.mkdir(parents=True, exist_ok=True)
    prepared = (module_dir / "go.sum").exists()
    bin_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod"}
    print(f"  building Kubernetes {version} {', '.join(commands)} from the Go module proxy (first time only, slow) ...",
          flush=True)
    if not prepared:
        _prepare_wrapper(module_dir, version, env)
    # The missing commands in one `go build`: they share most packages, so nothing waits for one command's link
    # (the longest single steps) before compiling the next, and the links overlap. An interrupted build loses
    # nothing compiled (the build cache keeps it). -p 2 keeps a 2-core machine usable.
    missing = [command for command, target in targets.items() if not target.exists()]
    if missing:
        _go(["build", "-p", "2", "-trimpath", "-ldflags", _ldflags(version), "-o", f"{bin_dir}/",
             *(f"k8s.io/kubernetes/cmd/{command}" for command in missing)], module_dir, env)
    missing = [str(path) for path in targets.values() if not path.exists()]
    if missing:
        raise InfraError(f"go build finished but did not produce {', '.join(missing)}")
    return targets


def _prepare_wrapper(module_dir: Path, version: str, env: dict[str, str]) -> None:
    download = subprocess.run(["go", "mod", "download", "-json", f"k8s.io/kubernetes@{version}"], cwd=module_dir,
                              capture_output=True, text=True, env={**env, "GOFLAGS": ""})
    if download.returncode != 0:
        raise InfraError(f"go mod download k8s.io/kubernetes@{version} failed:\n{download.stdout[-2000:]}"
                         f"{download.stderr[-2000:]}")
    kubernetes_go_mod = Path(json.loads(download.stdout)["GoMod"]).read_text()
    (module_dir / "go.mod").write_text(wrapper_go_mod(version, kubernetes_go_mod))
    (module_dir / "tools.go").write_text(_imports_file())
    _go(["mod", "tidy", "-e"], module_dir, {**env, "GOFLAGS": ""})
