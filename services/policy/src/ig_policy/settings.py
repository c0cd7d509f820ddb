"""Settings of the Policy Reasoner, from IG_* environment variables."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from ig_common.settings import GrpcServiceSettings, Port
from pydantic import Field, field_validator, model_validator

from ig_policy.breakglass import load_approvers
from ig_policy.clock import FileClock
from ig_policy.domain.gateway import parse_routes
from ig_policy.domain.masking import parse_drop_rules, parse_mask_rules
from ig_policy.engine.token import read_opa_token
from ig_policy.engine.wasm import WasmPolicy, read_bundle
from ig_policy.protection_keys import load_pepper, load_sealer


class Settings(GrpcServiceSettings):
    service_name: str = "policy"
    grpc_port: Port = 50051
    # /healthz and /metrics, plain HTTP for the kubelet's probes and Prometheus.
    http_port: Port = 8081
    # AuthZEN over HTTPS: a client certificate of the CA and a workload token granted by the authorization table.
    authzen_port: Port = 8091
    # HTTP forward-auth (nginx auth_request, Caddy, Traefik) over HTTPS: the caller is known by its client certificate.
    forward_auth_port: Port = 8092
    # Envoy ext_authz Check and forward-auth: per route, where each decision field comes from (JSON list, see
    # ig_policy.domain.gateway); a malformed mapping stops start-up naming the route and key.
    gateway_routes: list[Any] = Field(default_factory=list)
    # End users' bearer JWTs at the gateway: the issuer's public key (PEM), the issuer and audience they must carry.
    gateway_jwt_public_key_file: Path | None = None
    gateway_jwt_issuer: str = ""
    gateway_jwt_audience: str = ""
    # Every decision is in the decision log and the metrics; a trace of one in ten root decisions (plus every one a
    # traced gateway asks for) keeps the hot path about 1 ms of CPU cheaper per decision (make bench-policy).
    trace_sample_ratio: float = Field(default=0.1, ge=0.0, le=1.0)

    # The OPA sidecar (IG_OPA_URL; ig-infra's env provides it) and the document the service asks for.
    opa_url: str = Field(default="http://127.0.0.1:8181", pattern=r"^https?://[^/]+/?$")
    opa_decision_path: str = Field(default="ig/ctx/decision", pattern=r"^[a-z0-9_]+(/[a-z0-9_]+)+$")
    opa_batch_path: str = Field(default="ig/ctx/decisions", pattern=r"^[a-z0-9_]+(/[a-z0-9_]+)+$")
    # The bearer token OPA's API demands (policies/opa-system/authz.rego): a file holding it, read at start-up
    # (ig-infra's env provides it; in the charts an init step writes one per pod). Unset only for an OPA that runs
    # open, e.g. region-test's: against a locked OPA every decision then fails closed.
    opa_token_file: Path | None = None
    opa_data_path: str = Field(default="ig/config", pattern=r"^[a-z0-9_]+(/[a-z0-9_]+)*$")
    # Per-call budget for one OPA round trip; past it the answer is DENY ig.system.engine_unavailable.
    opa_timeout_ms: int = Field(default=50, ge=1, le=10_000)
    # Concurrent OPA round trips; more evaluations wait in a queue and go together when a slot frees (group commit).
    opa_max_in_flight: int = Field(default=4, ge=1, le=1024)
    # The most evaluations one OPA round trip carries (1 = never batch).
    opa_coalesce: int = Field(default=8, ge=1, le=1000)
    # The same policy compiled to Wasm (`opa build -t wasm -e ig/ctx/decision <policy dir>`, a .tar.gz bundle),
    # evaluated in this process while it was built from the revision the sidecar has loaded; the sidecar answers
    # everything else (ig_policy.engine.inprocess). Unset: every decision is an OPA round trip.
    policy_wasm_bundle: Path | None = None
    # Each refresh downloads and parses every module (~30 ms of event loop for ours): rarely enough to stay off the
    # decisions' p95, often enough that a hot-reloaded policy is stamped with its own revision within seconds.
    policy_revision_refresh_s: float = Field(default=10.0, gt=0, le=3600)

    # Worker processes serving the gRPC, AuthZEN and forward-auth ports together (SO_REUSEPORT: the kernel spreads
    # *connections* over them, so callers must open several). A service process decides on one Python thread, and
    # that thread is what saturates (README "Several worker processes"); 1 = no supervisor, the process serves.
    policy_workers: int = Field(default=1, ge=1, le=64)
    # Set by the supervisor for each worker it starts, never by hand: which one this is (its WAL directory and
    # metrics are its own).
    policy_worker_index: int | None = Field(default=None, ge=0)

    # Decision log: bounded queue, batched writes, OPA-style mask rules and drop rules (JSON in the env var).
    decision_log_queue_size: int = Field(default=20_000, ge=1)
    decision_log_batch_size: int = Field(default=500, ge=1, le=10_000)
    decision_log_flush_ms: int = Field(default=200, ge=1, le=60_000)
    # The service hands decisions to its writer process through a write-ahead log in this directory (segment
    # files; an emptyDir or PVC in the chart). Unset: <temp dir>/ig-policy-wal-<grpc port>, stable across restarts
    # of a service on one port. One service process per directory (a second one is refused at start).
    decision_log_wal_dir: Path | None = None
    decision_log_wal_segment_mb: int = Field(default=16, ge=1, le=1024)
    # Past this many MB of segments not yet acknowledged (PostgreSQL or the writer down for long) decisions are
    # refused with UNAVAILABLE: none is answered without its record.
    decision_log_wal_max_mb: int = Field(default=1024, ge=1, le=1_048_576)
    # True: an answer waits for its batch's fdatasync (survives a machine crash). False: for the write only
    # (survives a killed process; a machine crash can lose the last batches, counted as a torn tail).
    decision_log_wal_fsync: bool = True
    decision_log_writer_start_s: float = Field(default=60.0, gt=0, le=600)
    decision_log_mask: list[Any] = Field(default_factory=lambda: ["/input/actor/id"])
    decision_log_drop: list[Any] = Field(default_factory=list)
    # Required, no default (fail closed): the secret pepper of the log's pseudonyms (HMAC-SHA256) and the public
    # half of the replay key every record's input is sealed to (X25519 PEM). The private half is never here.
    decision_log_pepper_file: Path
    decision_log_input_key_file: Path

    # The server's clock judges time windows and expiries; a request's context.time further from it than this is
    # INVALID_ARGUMENT (a forwarded client clock or a replayed request cannot choose the moment).
    clock_skew_s: int = Field(default=300, ge=1, le=86_400)
    # Tests only: the service's clock reads a fixed instant (RFC 3339) from this file on every decision. Golden
    # cases and the benchmark use it; never set in production (start-up logs test_clock_in_use when it is).
    test_clock_file: Path | None = None

    # Signed break-glass: per tenant, the approvers whose grants the service accepts and the longest grant
    # (YAML, see ig_policy.breakglass). Unset: no grant is accepted, every break-glass request is denied.
    breakglass_approvers_path: Path | None = None

    @field_validator("breakglass_approvers_path")
    @classmethod
    def _approvers_parse(cls, value: Path | None) -> Path | None:
        if value is not None:
            load_approvers(value)  # a malformed entry stops start-up, naming it
        return value

    @property
    def wal_base(self) -> Path:
        """IG_DECISION_LOG_WAL_DIR, or its default: the directory of a one-process service, the parent of the
        workers' own."""
        if self.decision_log_wal_dir is not None:
            return self.decision_log_wal_dir
        return Path(tempfile.gettempdir()) / f"ig-policy-wal-{self.grpc_port}"

    @property
    def wal_directory(self) -> Path:
        """This process's WAL: the base for one process, ``worker-<i>`` in it for each worker (one service process
        per WAL directory; the writer of a worker reads its worker's)."""
        if self.policy_worker_index is None:
            return self.wal_base
        return self.wal_base / f"worker-{self.policy_worker_index}"

    @model_validator(mode="after")
    def _worker_index_in_range(self) -> Settings:
        if self.policy_worker_index is not None and self.policy_worker_index >= self.policy_workers:
            raise ValueError(f"IG_POLICY_WORKER_INDEX {self.policy_worker_index} is not below IG_POLICY_WORKERS "
                             f"{self.policy_workers} (the supervisor sets it)")
        return self

    @field_validator("decision_log_wal_dir")
    @classmethod
    def _wal_dir_usable(cls, value: Path | None) -> Path | None:
        if value is not None and value.exists() and not (value.is_dir() and os.access(value, os.W_OK | os.X_OK)):
            raise ValueError(f"{value} is not a writable directory")
        return value

    @field_validator("opa_token_file")
    @classmethod
    def _token_readable(cls, value: Path | None) -> Path | None:
        if value is not None:
            read_opa_token(value)
        return value

    @field_validator("policy_wasm_bundle")
    @classmethod
    def _wasm_bundle_loads(cls, value: Path | None) -> Path | None:
        if value is not None:
            WasmPolicy(read_bundle(value))
        return value

    @field_validator("gateway_routes")
    @classmethod
    def _routes_parse(cls, value: list[Any]) -> list[Any]:
        parse_routes(value)
        return value

    @model_validator(mode="after")
    def _jwt_settings_complete(self) -> Settings:
        if self.gateway_jwt_public_key_file is not None:
            if not self.gateway_jwt_issuer or not self.gateway_jwt_audience:
                raise ValueError("IG_GATEWAY_JWT_PUBLIC_KEY_FILE needs IG_GATEWAY_JWT_ISSUER and "
                                 "IG_GATEWAY_JWT_AUDIENCE")
            self.gateway_jwt_public_key_file.read_bytes()
        return self

    @field_validator("test_clock_file")
    @classmethod
    def _test_clock_readable(cls, value: Path | None) -> Path | None:
        if value is not None:
            FileClock(value)
        return value

    @field_validator("decision_log_mask")
    @classmethod
    def _mask_rules_parse(cls, value: list[Any]) -> list[Any]:
        parse_mask_rules(value)
        return value

    @field_validator("decision_log_pepper_file")
    @classmethod
    def _pepper_usable(cls, value: Path) -> Path:
        load_pepper(value)
        return value

    @field_validator("decision_log_input_key_file")
    @classmethod
    def _input_key_usable(cls, value: Path) -> Path:
        load_sealer(value)
        return value

    @field_validator("decision_log_drop")
    @classmethod
    def _drop_rules_parse(cls, value: list[Any]) -> list[Any]:
        parse_drop_rules(value)
        return value
