"""One settings object per service, read from ``IG_*`` environment variables.

A missing or invalid setting stops start-up with a message naming the variable, instead of a stack trace
deep inside a driver.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, TypeVar

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ig_common.residency import Residency, check_residency_file, load_residency
from ig_common.tls import IdentityError, WorkloadCertificate, workload_directory

ENV_PREFIX = "IG_"

# Subclasses that give a port a default keep the range check by using this type.
Port = Annotated[int, Field(ge=1, le=65535)]


class ServiceSettings(BaseSettings):
    """Settings every service has. Subclass it and add the service's own fields."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    service_name: str = Field(min_length=1)
    region: str = Field(default="region-a", pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")
    database_url: str = Field(pattern=r"^postgres(ql)?://")
    # The schema owner's connection, used only to run migrations at start-up (then closed); the service itself
    # runs as IG_DATABASE_URL's role. Unset: that role migrates too (it must own the schema).
    migration_database_url: str | None = Field(default=None, pattern=r"^postgres(ql)?://")
    kafka_bootstrap: str = Field(min_length=1)
    http_port: Port
    http_host: str = "127.0.0.1"
    # /healthz and /metrics on a plain port of their own, for a service whose IG_HTTP_PORT serves people (the
    # portal): probes and Prometheus never share a listener with the application. Unset: they are on IG_HTTP_PORT,
    # which then serves nothing else.
    health_port: Port | None = None
    # Share of the traces that start in this service which are recorded (parent-based: a traced caller always is).
    trace_sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)
    # The workload certificate (tls.crt, tls.key, ca.crt). Unset: $IG_IDENTITIES/<service name>, as ig-infra lays
    # them out; neither set stops start-up (no internal connection is ever made or served without it).
    tls_dir: Path | None = None

    def workload_certificate(self) -> WorkloadCertificate:
        return WorkloadCertificate(self.tls_dir or workload_directory(self.service_name))


class TenantResidencySettings(ServiceSettings):
    """For a service that stores or serves tenants' data: which tenants its region (IG_REGION) may serve."""

    # IG_TENANT_RESIDENCY_FILE: the policy data document (JSON, as OPA loads it: policies/rego/ig/config/data.json)
    # whose tenants' residency.pinned_region say where each tenant is served (ig_common.residency). A tenant pinned
    # to another region than IG_REGION is refused. Required: unset or unreadable stops start-up (fail closed; a
    # single-region deployment names the same document, whose pins then refuse only other regions' tenants).
    tenant_residency_file: str = Field(default="", validate_default=True)

    @field_validator("tenant_residency_file")
    @classmethod
    def _residency_loads(cls, value: str) -> str:
        return check_residency_file(value)

    @property
    def residency(self) -> Residency:
        return load_residency(self.tenant_residency_file, self.region)


class GrpcServiceSettings(ServiceSettings):
    grpc_port: Port
    grpc_host: str = "127.0.0.1"
    # Which identity may call which method (policies/authz/grpc-methods.yaml); default deny. Required to serve gRPC
    # (checked when the server is built, so a CLI sharing these settings does not need it).
    authz_table: Path | None = None
    # Server reflection lists every method to anyone allowed in; a development convenience, off by default.
    grpc_reflection: bool = False

    @field_validator("authz_table")
    @classmethod
    def _table_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"{value} is not a file")
        return value


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


class SettingsError(SystemExit):
    """Raised (as a clean exit with status 2) when the environment does not hold valid settings."""


def describe_errors(settings_cls: type[BaseSettings], error: ValidationError) -> list[str]:
    prefix = str(settings_cls.model_config.get("env_prefix", ""))
    lines = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "<settings>"
        variable = f"{prefix}{field}".upper()
        lines.append(f"invalid setting {variable}: {item['msg']}")
    return lines


def load_settings(settings_cls: type[SettingsT]) -> SettingsT:
    """Build ``settings_cls`` from the environment or exit with status 2 naming each bad variable."""
    try:
        return settings_cls()
    except ValidationError as error:
        lines = describe_errors(settings_cls, error)
        print("\n".join(lines), file=sys.stderr)
        raise SettingsError(2) from error


def load_identity(settings: ServiceSettings) -> WorkloadCertificate:
    """The service's certificate, or exit with status 2 naming IG_TLS_DIR: without it a service can neither serve
    nor call anything of the suite, so it is read before anything else starts."""
    try:
        return settings.workload_certificate()
    except IdentityError as error:
        print(f"invalid setting IG_TLS_DIR: {error}", file=sys.stderr)
        raise SettingsError(2) from error
