"""The OPA server (1.x), built with ``go install`` into the versioned cache, serving the repo's policies."""

from __future__ import annotations

import os
import subprocess
import urllib.request
from pathlib import Path

from ig_infra.components.base import Component, env_port
from ig_infra.go_tools import tool_path
from ig_infra.process import ensure_port_free, port_open, spawn, wait_until


def opa_binary(cache: Path) -> Path:
    return tool_path(cache, "opa")


class Opa(Component):
    name = "opa"

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.host = "127.0.0.1"
        self.port = env_port("IG_OPA_PORT", 8181)
        self.policies = Path(os.environ.get("IG_OPA_POLICIES", self.paths.repo / "policies" / "rego"))

    def install(self) -> None:
        opa_binary(self.paths.cache)

    def start(self) -> None:
        if self.running() and self.healthy():
            return
        ensure_port_free(self.host, self.port, "OPA", "IG_OPA_PORT")
        self.policies.mkdir(parents=True, exist_ok=True)
        spawn(
            [str(opa_binary(self.paths.cache)), "run", "--server", "--addr", f"{self.host}:{self.port}",
             "--log-level", "error", "--watch", str(self.policies)],
            log_file=self.log_file, pid_file=self.pid_file,
        )
        wait_until(self.healthy, timeout=30, what="OPA", log_file=self.log_file, alive=self.running)

    def healthy(self) -> bool:
        if not port_open(self.host, self.port):
            return False
        with urllib.request.urlopen(f"http://{self.host}:{self.port}/health", timeout=2) as response:
            return bool(response.status == 200)

    def address(self) -> str:
        return f"http://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        return {"IG_OPA_URL": self.address()}

    def version(self) -> str:
        return subprocess.run([str(opa_binary(self.paths.cache)), "version"], capture_output=True,
                              text=True).stdout.splitlines()[0]
