"""Start the burn service and its real dependencies for simulations, e2e tests and the benchmark.

Everything here runs real processes on free loopback ports: a private Prometheus (built by ig-infra), the burn
service as ``python -m ig_burn``, and the synthetic exporter.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from ig_common.http_client import client_as
from ig_common.ports import free_port
from ig_common.tls import inherited_identity


def prometheus_config(targets: dict[str, str], *, scrape_interval: str = "1s", rules_dir: Path | None = None) -> str:
    """A Prometheus config scraping ``job -> host:port``."""
    lines = ["global:", f"  scrape_interval: {scrape_interval}", f"  evaluation_interval: {scrape_interval}"]
    if rules_dir is not None:
        lines += ["rule_files:", f'  - "{rules_dir}/*.yml"']
    lines.append("scrape_configs:")
    for job, target in targets.items():
        lines += [f"  - job_name: {job}", "    static_configs:", f'      - targets: ["{target}"]']
    return "\n".join(lines) + "\n"


def synthetic_slo_yaml(name: str, *, series: str = "s0000", objective: float = 0.99, job: str = "synthetic") -> str:
    selector = f'synthetic_requests_total{{job="{job}",series="{series}"'
    return f"""apiVersion: openslo/v1
kind: SLO
metadata:
  name: {name}
spec:
  service: synthetic
  indicator:
    metadata:
      name: {name}-errors
    spec:
      ratioMetric:
        counter: true
        bad:
          metricSource:
            type: Prometheus
            spec:
              query: '{selector},code="500"}}'
        total:
          metricSource:
            type: Prometheus
            spec:
              query: '{selector}}}'
  timeWindow:
    - duration: 30d
      isRolling: true
  objectives:
    - target: {objective}
"""


def throttle_policy_yaml(slo: str, *, min_dwell: str = "2s") -> str:
    return f"""apiVersion: ig.burn/v1
kind: ThrottlePolicy
metadata:
  name: {slo}-throttle
spec:
  slo: {slo}
  minDwell: {min_dwell}
  actions:
    - {{type: flag, flag: subs.optimizedBuffer, throttled: false, normal: true}}
    - {{type: rateLimit, flag: subs.rateLimitPerSecond, throttled: 50, normal: 500}}
    - {{type: rateLimit, flag: connectors.rateLimitPerSecond, throttled: 20, normal: 200}}
    - {{type: pauseExperiments, flag: experiments.paused}}
"""


class BurnProcess:
    """``python -m ig_burn`` as a subprocess on free ports, with the given extra IG_* settings."""

    def __init__(self, env: dict[str, str], log_file: Path, *, caller: str = "operator",
                 grpc_port: int | None = None) -> None:
        self.http_port = free_port()
        # A gRPC port given in advance: a client configured before this process starts (a migration service's
        # IG_BURN_GRPC) finds it there.
        self.grpc_port = grpc_port or free_port()
        self.api_port = free_port()
        self.public_port = free_port()
        # The caller's certificate settings come along unless its env names its own.
        self.env = {**inherited_identity(), **env, "IG_HTTP_PORT": str(self.http_port),
                    "IG_GRPC_PORT": str(self.grpc_port), "IG_API_PORT": str(self.api_port),
                    "IG_PUBLIC_PORT": str(self.public_port), "IG_EXTERNAL_URL": self.url,
                    "PATH": os.environ.get("PATH", "")}
        # The identity /get-burn is asked as (a workload token and certificate of the caller's IG_IDENTITIES).
        self.caller = caller
        self.log_file = log_file
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The public listener: OFREP and the /burn page."""
        return f"http://127.0.0.1:{self.public_port}"

    @property
    def health_url(self) -> str:
        """/healthz and /metrics."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def api_url(self) -> str:
        """/get-burn over HTTPS."""
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(self, timeout: float = 40.0) -> BurnProcess:
        log = open(self.log_file, "ab")  # noqa: SIM115 (the child keeps writing to it)
        self.process = subprocess.Popen([sys.executable, "-m", "ig_burn"], env=self.env, stdout=log,
                                        stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"burn service exited {self.process.returncode}:\n{self.logs()}")
            try:
                with urllib.request.urlopen(f"{self.health_url}/healthz", timeout=1) as response:
                    if response.status == 200 and _listening(self.public_port) and _listening(self.api_port):
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"burn service not healthy after {timeout}s:\n{self.logs()}")

    def stop(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.terminate()
        try:
            return self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def logs(self) -> str:
        return self.log_file.read_text(errors="replace")[-4000:] if self.log_file.exists() else ""

    def get_json(self, path: str) -> Any:
        """GET ``path`` of the HTTPS API as ``caller``."""
        with client_as(self.caller, self.api_url, "burn", timeout=5) as client:
            response = client.get(path)
            response.raise_for_status()
            return response.json()


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def post_json(url: str, body: object) -> int:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return int(response.status)


def wait_for(check: Any, *, timeout: float, interval: float = 0.25, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")
