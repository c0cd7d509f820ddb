"""The Prometheus Pushgateway, built from the Go module proxy: where batch jobs (region-test) leave their figures
for the local Prometheus, which scrapes it with ``honor_labels: true`` so each pushed job keeps its own labels.

The shared instance persists what was pushed in its run directory, so a restart does not forget the last run's
figures. Tests start a private one on a free port (``PrivatePushgateway``).
"""

from __future__ import annotations

import subprocess
import urllib.request
from pathlib import Path

from ig_infra.components.base import Component, PrivateServer, env_port
from ig_infra.go_tools import tool_path
from ig_infra.process import ensure_port_free, port_open, spawn, wait_until

DEFAULT_PORT = 9091


def pushgateway_binary(cache: Path) -> Path:
    return tool_path(cache, "pushgateway")


def pushgateway_port() -> int:
    return env_port("IG_PUSHGATEWAY_PORT", DEFAULT_PORT)


def pushgateway_ready(host: str, port: int) -> bool:
    if not port_open(host, port):
        return False
    with urllib.request.urlopen(f"http://{host}:{port}/-/ready", timeout=2) as response:
        return bool(response.status == 200)


def pushgateway_command(binary: Path, host: str, port: int, persistence: Path | None) -> list[str]:
    command = [str(binary), f"--web.listen-address={host}:{port}", "--log.level=warn"]
    if persistence is not None:  # written at most every 30 s and on a clean stop
        command += [f"--persistence.file={persistence}", "--persistence.interval=30s"]
    return command


class Pushgateway(Component):
    name = "pushgateway"
    regional = False  # beside the shared Prometheus

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.host = "127.0.0.1"
        self.port = pushgateway_port()

    def install(self) -> None:
        pushgateway_binary(self.paths.cache)

    def start(self) -> None:
        if self.running() and self.healthy():
            return
        ensure_port_free(self.host, self.port, "Pushgateway", "IG_PUSHGATEWAY_PORT")
        self.dir.mkdir(parents=True, exist_ok=True)
        command = pushgateway_command(pushgateway_binary(self.paths.cache), self.host, self.port,
                                      self.dir / "metrics.store")
        spawn(command, log_file=self.log_file, pid_file=self.pid_file)
        wait_until(self.healthy, timeout=30, what="Pushgateway", log_file=self.log_file, alive=self.running)

    def healthy(self) -> bool:
        return pushgateway_ready(self.host, self.port)

    def address(self) -> str:
        return f"http://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        return {"IG_PUSHGATEWAY_URL": self.address()}

    def version(self) -> str:
        done = subprocess.run([str(pushgateway_binary(self.paths.cache)), "--version"], capture_output=True,
                              text=True)
        return (done.stdout or done.stderr).splitlines()[0]


class PrivatePushgateway(PrivateServer):
    """A Pushgateway of one's own (tests): in memory only, on a free port, logging into a scratch dir."""

    log_name = "pushgateway"

    def start(self) -> PrivatePushgateway:
        self.workdir.mkdir(parents=True, exist_ok=True)
        spawn(pushgateway_command(pushgateway_binary(self.cache), self.host, self.port, None),
              log_file=self.log_file, pid_file=self.pid_file)
        wait_until(lambda: pushgateway_ready(self.host, self.port), timeout=30, what="private Pushgateway",
                   log_file=self.log_file)
        return self
