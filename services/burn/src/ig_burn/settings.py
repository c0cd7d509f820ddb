"""Settings of the Error-Budget service, from IG_* environment variables."""

from pathlib import Path

from ig_common.settings import GrpcServiceSettings, Port
from pydantic import Field, field_validator, model_validator

from ig_burn.webhook_signing import webhook_signer

DEFAULT_CONFIG = Path(__file__).parent / "config"


class Settings(GrpcServiceSettings):
    service_name: str = "burn"
    grpc_port: Port = 50053
    # /healthz and /metrics, plain HTTP for the kubelet's probes and Prometheus.
    http_port: Port = 8083
    # GET /get-burn over HTTPS: a client certificate of the CA and a workload token the authorization table grants.
    api_port: Port = 8093
    # OFREP for product code and the /burn page for people: plain HTTP, read-only (TLS and sign-in in front of it
    # are the ingress's job, as for the portal). Flags are changed only through FlagService (gRPC, mTLS, table).
    public_port: Port = 8013
    # Where burn is measured.
    prometheus_url: str = Field(default="http://127.0.0.1:9090", pattern=r"^https?://")
    prometheus_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    # Directory of YAML files: OpenSLO `kind: SLO` documents and `kind: ThrottlePolicy` documents.
    slo_dir: Path = DEFAULT_CONFIG
    evaluation_interval_seconds: float = Field(default=30.0, gt=0, le=3600)
    # Simulations only: divide every window (30d, 7d, 1h ...) by this; 1 = production windows.
    window_scale: float = Field(default=1.0, ge=1.0)
    min_window_seconds: float = Field(default=1.0, gt=0)
    # (SLO, window) error-ratio terms per PromQL query, and how many queries run at once.
    query_batch_size: int = Field(default=250, ge=1, le=5000)
    query_concurrency: int = Field(default=4, ge=1, le=64)
    # Read error ratios precomputed by the recording rules `python -m ig_burn.recording_rules` generates (one query
    # for every SLO whose rules Prometheus has loaded; the others are queried directly), accepting recorded samples
    # up to this age. 0 = never look for them.
    recording_rules_max_age_seconds: float = Field(default=90.0, ge=0, le=3600)
    # Alertmanager-compatible webhook receiving incident open/resolve notifications; empty = none.
    alert_webhook_url: str = Field(default="", pattern=r"^(https?://.*)?$")
    # The Standard Webhooks signing secret (a file holding `whsec_` + base64 of 24 to 64 random bytes): every
    # notification is signed with it (webhook-id, webhook-timestamp, webhook-signature), so a receiver can tell our
    # notifications from anyone's. Required with a webhook URL.
    alert_webhook_secret_file: Path | None = None
    # A notification is given up after this many failed attempts (backing off 1 s, 2 s, 4 s ... up to 5 min), or at
    # once when the receiver refuses it for good (a 4xx other than 408 and 429).
    alert_webhook_max_attempts: int = Field(default=20, ge=1, le=1000)

    @field_validator("alert_webhook_secret_file")
    @classmethod
    def _secret_readable(cls, value: Path | None) -> Path | None:
        if value is not None:
            webhook_signer(value)  # raises ValueError saying what is wrong with the file
        return value

    @model_validator(mode="after")
    def _webhook_is_signed(self) -> "Settings":
        if self.alert_webhook_url and self.alert_webhook_secret_file is None:
            raise ValueError("IG_ALERT_WEBHOOK_SECRET_FILE is required with IG_ALERT_WEBHOOK_URL: notifications are "
                             "signed (Standard Webhooks) so that a receiver can refuse forged ones")
        return self
    # Where people open the /burn page (incident notifications link to it): the public listener, or its ingress.
    external_url: str = Field(default="http://127.0.0.1:8013", pattern=r"^https?://")
    # How often a replica reloads the flag set from PostgreSQL for OFREP (changes it makes itself apply at once).
    flag_refresh_seconds: float = Field(default=1.0, gt=0, le=60)
    # Share of OFREP evaluations traced when the caller sends no traceparent (a caller's traceparent is honoured).
    ofrep_trace_ratio: float = Field(default=0.01, ge=0, le=1)
