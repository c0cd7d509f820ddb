"""What every infrastructure component offers the CLI."""

from __future__ import annotations

import os
import shutil
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

from ig_infra.netns import namespace_of, port_open_in, wrapped
from ig_infra.paths import Paths
from ig_infra.process import InfraError, read_pid, terminate


def env_port(variable: str, default: int) -> int:
    raw = os.environ.get(variable, str(default))
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ValueError(f"invalid setting {variable}: {raw!r} is not a TCP port")
    return int(raw)


class Component(ABC):
    name: str
    # False: shared by both regions, runs on the host even when the regions run in network namespaces.
    regional: ClassVar[bool] = True

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
    def netns(self) -> str | None:
        """The network namespace this component runs in (ig_infra.suite_network), None on the loopback layout."""
        return namespace_of(self.paths.run) if self.regional else None

    def in_region(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run where this component runs (inside its region's namespace, if it has one)."""
        return wrapped(self.netns, argv)

    def listening(self, host: str, port: int) -> bool:
        """Whether ``host:port`` listens where this component runs: checked inside its namespace, never through
        the host's forwarded port (which accepts whether or not anything is behind it)."""
        return port_open_in(self.netns, host, port)

    def ensure_free(self, host: str, port: int, variable: str) -> None:
        if self.listening(host, port):
            raise InfraError(f"port {host}:{port} for {self.name} is already taken by another process; stop it or "
                             f"set {variable}")

    @property
    def logs(self) -> Path:
        return self.log_file


class PrivateServer(ABC):
    """A server process of one's own (tests, benchmarks): a scratch dir for its log, pid and data, a port given by
    the caller; ``with`` starts it and removes it with its dir. Subclasses say how to start and when it is ready."""

    log_name = "server"

    def __init__(self, cache: Path, workdir: Path, port: int, *, host: str = "127.0.0.1") -> None:
        self.cache = cache
        self.workdir = workdir
        self.host = host
        self.port = port
        self.log_file = workdir / f"{self.log_name}.log"
        self.pid_file = workdir / f"{self.log_name}.pid"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @abstractmethod
    def start(self) -> Self: ...

    def stop(self) -> None:
        terminate(self.pid_file)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.remove()
