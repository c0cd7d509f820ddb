"""Settings of the Migration Orchestrator, from IG_* environment variables."""

from pathlib import Path

from ig_common.settings import GrpcServiceSettings, Port
from pydantic import Field, field_validator

from ig_migration.store.approvers import load_approvers


class Settings(GrpcServiceSettings):
    service_name: str = "migration"
    grpc_port: Port = 50054
    http_port: Port = 8084
    # ig.burn.v1.BurnService address (host:port). Unset: the SLO-headroom gate uses slo_headroom below and says so.
    burn_grpc: str | None = None
    # Remaining error budget (0..1) assumed when no BurnService is configured; unset as well: the gate fails closed.
    slo_headroom: float | None = Field(default=None, ge=0, le=1)
    # Prometheus base URL for ACA metrics of source "prometheus".
    prometheus_url: str | None = Field(default=None, pattern=r"^https?://")
    # Free bytes on the database volume when its data directory is not visible from here.
    db_free_bytes: int | None = Field(default=None, ge=0)
    # Where the evidence report (JSON + summary) is written.
    migration_artifacts_dir: Path = Path("artifacts/migration")
    # Allows plans with kubernetes.enabled to switch a Service selector (needs a kubeconfig or in-cluster account).
    kubernetes_switch: bool = False
    # Pause the backfill this long after every batch (seconds); a coarse nice-ratio for very busy primaries.
    backfill_pause_seconds: float = Field(default=0.0, ge=0, le=10)
    # Directory of <name>.pub PEM public keys (ECDSA P-256) of the identities that may approve plans; gRPC Run
    # refuses every plan while it is unset. Read again at every Run.
    migration_approvers: Path | None = None

    @field_validator("migration_approvers")
    @classmethod
    def approvers_readable(cls, directory: Path | None) -> Path | None:
        if directory is not None:
            load_approvers(directory)
        return directory
