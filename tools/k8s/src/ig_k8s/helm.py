"""helm (built from the Go module proxy) with its own config/cache dirs, so nothing touches the user's ~/.config."""

from __future__ import annotations

import os
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from ig_infra.go_tools import tool_path
from ig_infra.paths import Paths
from ig_infra.process import InfraError

from ig_k8s.suite import CHARTS_DIR, region_values

# The Kubernetes version the charts are rendered and validated for (schemas: the PyPI package kubernetes-validate).
KUBE_VERSION = "1.37.0"
LIBRARY_CHART = CHARTS_DIR / "ig-lib"
# `helm dependency build` writes <chart>/tmpcharts-<pid> and renames it to <chart>/charts: two at once on one chart
# (the suite's installs render both regions' releases in parallel) removed each other's directory ("lstat
# charts/policy/tmpcharts-964: no such file or directory", `make k8s-up` failed so on a fresh worktree).
_DEPENDENCY_LOCK = threading.Lock()


@dataclass(frozen=True)
class Helm:
    binary: Path
    home: Path
    kubeconfig: Path | None = None

    @classmethod
    def create(cls, paths: Paths | None = None, kubeconfig: Path | None = None) -> Helm:
        paths = paths or Paths.from_environment()
        return cls(tool_path(paths.cache, "helm"), paths.component_dir("k8s") / "helm", kubeconfig)

    def env(self) -> dict[str, str]:
        env = {**os.environ, "HELM_CACHE_HOME": str(self.home / "cache"), "HELM_CONFIG_HOME": str(self.home / "config"),
               "HELM_DATA_HOME": str(self.home / "data")}
        if self.kubeconfig is not None:
            env["KUBECONFIG"] = str(self.kubeconfig)
        return env

    def run(self, *args: str, timeout: float = 120) -> str:
        result = subprocess.run([str(self.binary), *args], capture_output=True, text=True, env=self.env(),
                                timeout=timeout)
        if result.returncode != 0:
            raise InfraError(f"helm {' '.join(args)} failed:\n{result.stdout[-2000:]}{result.stderr[-3000:]}")
        return result.stdout

    def with_kubeconfig(self, kubeconfig: Path) -> Helm:
        return Helm(self.binary, self.home, kubeconfig)

    def dependency_build(self, chart: Path) -> None:
        """Vendor the library chart into chart/charts (a local file:// dependency: no network)."""
        vendored = chart / "charts" / "ig-lib-1.2.1.tgz"
        sources = [p for p in LIBRARY_CHART.rglob("*") if p.is_file()]
        with _DEPENDENCY_LOCK:
            if vendored.exists() and all(p.stat().st_mtime <= vendored.stat().st_mtime for p in sources):
                return
            self.run("dependency", "build", "--skip-refresh", str(chart))

    def lint(self, chart: Path, region: str) -> str:
        self.dependency_build(chart)
        return self.run("lint", "--strict", str(chart), "-f", str(region_values(region)))

    def template(self, chart: Path, region: str, release: str, namespace: str = "ig",
                 sets: tuple[str, ...] = ()) -> str:
        self.dependency_build(chart)
        args = ["template", release, str(chart), "--namespace", namespace, "--kube-version", KUBE_VERSION,
                "-f", str(region_values(region))]
        for item in sets:
            args += ["--set", item]
        return self.run(*args)


def manifests(rendered: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(rendered) if isinstance(doc, dict) and doc]
