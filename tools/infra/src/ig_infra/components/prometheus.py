"""Prometheus 3.x, built from the Go module proxy, scraping every service's /metrics and the Pushgateway.

The shared instance renders ``tools/infra/prometheus/prometheus.yml`` into its run directory; its alert rules are the
charts' own rule files (``charts/*/rules/*.rules.yml``), the ones the charts ship as PrometheusRule objects. Tests
and benchmarks start a private instance with their own config on a free port (``PrivatePrometheus``) so they depend
on no one.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

from ig_infra.components.base import Component, PrivateServer, env_port
from ig_infra.components.pushgateway import pushgateway_port
from ig_infra.go_tools import module_build_dir, tool_path
from ig_infra.process import InfraError, ensure_port_free, port_open, spawn, wait_until


def prometheus_binary(cache: Path) -> Path:
    return tool_path(cache, "prometheus")


def built_promtool(cache: Path) -> Path | None:
    """promtool if it is already built (never starts a build)."""
    path = module_build_dir(cache, "promtool") / "bin" / "promtool"
    return path if path.exists() else None


def prometheus_ready(host: str, port: int) -> bool:
    if not port_open(host, port):
        return False
    with urllib.request.urlopen(f"http://{host}:{port}/-/ready", timeout=2) as response:
        return bool(response.status == 200)


def prometheus_command(binary: Path, config: Path, data_dir: Path, host: str, port: int,
                       retention: str = "35d") -> list[str]:
    return [str(binary), f"--config.file={config}", f"--storage.tsdb.path={data_dir}",
            f"--storage.tsdb.retention.time={retention}", f"--web.listen-address={host}:{port}",
            "--web.enable-lifecycle", "--log.level=warn"]


class Prometheus(Component):
    name = "prometheus"
    regional = False  # one place to look for both regions

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.host = "127.0.0.1"
        self.port = env_port("IG_PROMETHEUS_PORT", 9090)
        self.template = self.paths.repo / "tools" / "infra" / "prometheus" / "prometheus.yml"
        self.charts_dir = self.paths.repo / "charts"
        self.targets_dir = self.dir / "targets"
        self.config = self.dir / "prometheus.yml"

    def install(self) -> None:
        prometheus_binary(self.paths.cache)
        tool_path(self.paths.cache, "promtool")

    def rule_charts(self) -> list[str]:
        """The charts that ship alert rules (a rules/ folder); their files are the rules this instance loads."""
        return sorted(path.parent.name for path in self.charts_dir.glob("*/rules") if path.is_dir())

    def render_config(self) -> Path:
        self.targets_dir.mkdir(parents=True, exist_ok=True)
        lines = self.template.read_text(encoding="utf-8").splitlines(keepends=True)
        text = "".join(line.replace("{chart}", chart) for line in lines
                       for chart in (self.rule_charts() if "{chart}" in line else [""]))
        substitutions = (("charts_dir", self.charts_dir), ("targets_dir", self.targets_dir),
                         ("pushgateway_port", pushgateway_port()), ("port", self.port))
        for name, value in substitutions:
            text = text.replace(f"{{{name}}}", str(value))
        self.config.write_text(text, encoding="utf-8")
        return self.config

    def start(self) -> None:
        if self.running() and self.healthy():
            self.reload()  # a second `ig-infra up` applies today's config and rule files to the running instance
            return
        ensure_port_free(self.host, self.port, "Prometheus", "IG_PROMETHEUS_PORT")
        command = prometheus_command(prometheus_binary(self.paths.cache), self.render_config(), self.dir / "data",
                                     self.host, self.port)
        spawn(command, log_file=self.log_file, pid_file=self.pid_file)
        wait_until(self.healthy, timeout=60, what="Prometheus", log_file=self.log_file, alive=self.running)

    def reload(self) -> None:
        self.render_config()
        request = urllib.request.Request(f"{self.address()}/-/reload", method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                response.read()
        except OSError as error:  # Prometheus keeps its old config when the new one is bad; say so
            raise InfraError(f"Prometheus refused to reload {self.config}: {error}; see {self.log_file}") from error

    def healthy(self) -> bool:
        return prometheus_ready(self.host, self.port)

    def address(self) -> str:
        return f"http://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        return {"IG_PROMETHEUS_URL": self.address()}

    def add_exporter(self, job: str, target: str) -> Path:
        """Let the shared instance scrape a test exporter (file_sd)."""
        self.targets_dir.mkdir(parents=True, exist_ok=True)
        path = self.targets_dir / f"{job}.json"
        path.write_text(json.dumps([{"targets": [target], "labels": {"job": job}}]), encoding="utf-8")
        return path

    def remove_exporter(self, job: str) -> None:
        """Stop scraping what ``add_exporter`` added (its series go stale at the next file_sd refresh)."""
        (self.targets_dir / f"{job}.json").unlink(missing_ok=True)

    def version(self) -> str:
        return subprocess.run([str(prometheus_binary(self.paths.cache)), "--version"], capture_output=True,
                              text=True).stdout.splitlines()[0]


class PrivatePrometheus(PrivateServer):
    """A Prometheus process of one's own (tests, benchmarks): given config text, a free port, a scratch dir."""

    log_name = "prometheus"

    def __init__(self, cache: Path, workdir: Path, config_text: str, port: int, *, host: str = "127.0.0.1") -> None:
        super().__init__(cache, workdir, port, host=host)
        self.config_text = config_text

    def start(self) -> PrivatePrometheus:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "prometheus.yml"
        config.write_text(self.config_text, encoding="utf-8")
        promtool = built_promtool(self.cache)
        if promtool is not None:  # validate when promtool is at hand; Prometheus rejects bad configs anyway
            check = subprocess.run([str(promtool), "check", "config", str(config)], capture_output=True, text=True)
            if check.returncode != 0:
                raise InfraError(f"promtool rejects {config}:\n{check.stdout}{check.stderr}")
        spawn(prometheus_command(prometheus_binary(self.cache), config, self.workdir / "data", self.host, self.port),
              log_file=self.log_file, pid_file=self.pid_file)
        wait_until(lambda: prometheus_ready(self.host, self.port), timeout=60, what="private Prometheus",
                   log_file=self.log_file)
        return self

    def reload(self) -> None:
        """A running instance loads today's config text (and whatever files it names, such as credentials)."""
        (self.workdir / "prometheus.yml").write_text(self.config_text, encoding="utf-8")
        request = urllib.request.Request(f"{self.url}/-/reload", method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
