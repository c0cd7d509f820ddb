"""Where the infra keeps downloads (cache, versioned) and running state (run dir)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[4]


@dataclass(frozen=True)
class Paths:
    cache: Path
    run: Path
    repo: Path = REPO_ROOT

    @classmethod
    def from_environment(cls) -> Paths:
        cache = Path(os.environ.get("IG_CACHE_DIR", Path.home() / ".cache" / "ig-mc"))
        # Outside the work tree and world-traversable: PostgreSQL refuses to run as root and runs as `postgres`.
        run = Path(os.environ.get("IG_RUN_DIR", "/var/tmp/ig-mc"))
        return cls(cache=cache, run=run)

    def component_dir(self, name: str) -> Path:
        path = self.run / name
        path.mkdir(parents=True, exist_ok=True)
        return path
