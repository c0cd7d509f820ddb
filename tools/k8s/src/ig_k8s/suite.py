"""The suite as the delivery sees it: one image, one chart and one set of ports per service."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from ig_infra.paths import REPO_ROOT

REGIONS: tuple[str, ...] = ("region-a", "region-b")

T = TypeVar("T")


def in_parallel(work: dict[str, Callable[[], T]]) -> dict[str, T]:
    """Each region's (or release's) work in a thread of its own, for work that mostly waits on API servers and
    kubelets; the first failure is raised once all have ended."""
    with ThreadPoolExecutor(max_workers=max(1, len(work))) as pool:
        futures = {key: pool.submit(job) for key, job in work.items()}
        return {key: future.result() for key, future in futures.items()}


@dataclass(frozen=True)
class ServiceImage:
    name: str  # chart name, image ig/<name>, directory services/<name>
    package: str  # uv workspace package
    module: str  # python -m <module>
    http_port: int
    grpc_port: int | None = None
    # /healthz and /metrics on a port of their own (the chart's ports.health), where http_port serves people
    health_port: int | None = None

    @property
    def health_port_name(self) -> str:
        """The container port the probes and Prometheus use."""
        return "http" if self.health_port is None else "health"

    @property
    def image(self) -> str:
        return f"ig/{self.name}"

    @property
    def dockerfile(self) -> Path:
        return REPO_ROOT / "services" / self.name / "Dockerfile"

    @property
    def chart_dir(self) -> Path:
        return REPO_ROOT / "charts" / self.name


SERVICES: tuple[ServiceImage, ...] = (
    ServiceImage("policy", "ig-policy", "ig_policy.app", http_port=8081, grpc_port=50051),
    ServiceImage("evidence", "ig-evidence", "ig_evidence.app", http_port=8082, grpc_port=50052),
    ServiceImage("burn", "ig-burn", "ig_burn.app", http_port=8083, grpc_port=50053),
    ServiceImage("migration", "ig-migration", "ig_migration.app", http_port=8084, grpc_port=50054),
    ServiceImage("audit-portal", "ig-portal", "ig_portal.app", http_port=8080, health_port=8085),
)

CHARTS_DIR = REPO_ROOT / "charts"
UMBRELLA_CHART = CHARTS_DIR / "ig-suite"


def region_values(region: str) -> Path:
    return CHARTS_DIR / f"values-{region}.yaml"


def by_name(name: str) -> ServiceImage:
    for service in SERVICES:
        if service.name == name:
            return service
    raise KeyError(name)
