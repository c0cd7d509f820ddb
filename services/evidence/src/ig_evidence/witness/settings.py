"""Settings of a witness (``python -m ig_evidence.witness``), from IG_* environment variables.

A witness needs no database and no Kafka: its state is one SQLite file. It serves ``POST /add-checkpoint`` on
IG_WITNESS_PORT over HTTPS (a client certificate of the suite's CA, then a workload token the authorization table
grants), and /healthz + /metrics on plain IG_HTTP_PORT.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from ig_common.settings import Port
from ig_common.tls import WorkloadCertificate, workload_directory
from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ig_evidence.domain.note import NoteError
from ig_evidence.domain.witness import WitnessedLog

KEY_FILE_NAME = "witness.key"


class LogSetting(BaseModel):
    """One entry of IG_WITNESS_LOGS: a log's origin and its checkpoint keys' note verifier keys."""

    origin: Annotated[str, Field(pattern=r"^\S+$")]
    verifier_keys: Annotated[list[str], Field(min_length=1)]


class WitnessSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IG_", extra="ignore", frozen=True)

    service_name: str = "witness"
    region: str = Field(default="region-a", pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")
    http_host: str = "127.0.0.1"
    # /healthz and /metrics, plain HTTP for probes and Prometheus.
    http_port: Port = 8086
    # POST /add-checkpoint, HTTPS with a client certificate of the CA and a workload token.
    witness_port: Port = 8096
    # The witness's key name in its cosignature lines (a schema-less URL, c2sp.org/tlog-cosignature).
    witness_name: str = Field(default="witness.maestro-conductor.dev/region-a", pattern=r"^[^\s+]+$")
    # The Ed25519 cosigning key (PEM PKCS#8, 0600/0400/0440). Unset: witness.key beside the workload certificate.
    witness_key_path: Path | None = None
    # The SQLite file holding, per log, the size and root last cosigned. Losing it lets the witness be rolled back.
    witness_state_path: Path = Path("/var/tmp/ig-mc/witness/state.db")
    # The logs witnessed, JSON: [{"origin": "...", "verifier_keys": ["name+hash+base64", ...]}, ...].
    witness_logs: list[LogSetting] = Field(min_length=1)
    # Who may call what (policies/authz/grpc-methods.yaml, its http: rows).
    authz_table: Path
    # The workload certificate (tls.crt, tls.key, ca.crt). Unset: $IG_IDENTITIES/<service name>.
    tls_dir: Path | None = None

    @field_validator("witness_logs")
    @classmethod
    def _logs_valid(cls, value: list[LogSetting]) -> list[LogSetting]:
        origins = [log.origin for log in value]
        if len(set(origins)) != len(origins):
            raise ValueError("an origin is listed twice")
        for log in value:
            try:
                WitnessedLog(log.origin, tuple(log.verifier_keys))
            except NoteError as error:
                raise ValueError(f"{log.origin}: {error}") from error
        return value

    @field_validator("authz_table")
    @classmethod
    def _table_exists(cls, value: Path) -> Path:
        if not value.is_file():
            raise ValueError(f"{value} is not a file")
        return value

    def logs(self) -> tuple[WitnessedLog, ...]:
        return tuple(WitnessedLog(log.origin, tuple(log.verifier_keys)) for log in self.witness_logs)

    def workload_certificate(self) -> WorkloadCertificate:
        return WorkloadCertificate(self.tls_dir or workload_directory(self.service_name))

    def key_file(self) -> Path:
        return self.witness_key_path or (self.tls_dir or workload_directory(self.service_name)) / KEY_FILE_NAME
