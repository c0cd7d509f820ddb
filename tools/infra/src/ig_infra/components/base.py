"""What every infrastructure component offers the CLI."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path

from ig_infra.paths import Paths
from ig_infra.process import read_pid, terminate


def env_port(variable: str, default: int) -> int:
    raw = os.environ.get(variable, str(default))
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ValueError(f"invalid setting {variable}: {raw!r} is not a TCP port")
    return int(raw)


class Component(ABC):
    name: str

    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        self.dir = paths.component_dir(self.name)
        self.log_file = self.dir / f"{self.name}.log"
        self.pid_file = self.dir / f"{self.name}.pid"

    def install(self) -> None:  # noqa: B027  (most components need nothing installed)
        """Fetch or build what the component needs into the versioned cache (idempotent)."""

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def address(self) -> str: ...

    def healthy(self) -> bool:
        return self.running()

    def running(self) -> bool:
        return read_pid(self.pid_file) is not None

    def stop(self) -> bool:
        return terminate(self.pid_file)

    def env(self) -> dict[str, str]:
        """Environment variables that point clients (services, tests) at this component."""
        return {}

    @property
    def logs(self) -> Path:
        return self.log_file
