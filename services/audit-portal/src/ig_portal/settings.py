"""Settings of the Audit Portal, from IG_* environment variables."""

import ssl
from pathlib import Path

from ig_common.settings import Port, TenantResidencySettings
from ig_evidence.bundle.build import load_contract
from ig_evidence.domain.cosignature import Cosigner, parse_cosigner_key
from ig_evidence.domain.note import parse_verifier_key
from pydantic import Field, field_validator, model_validator


class Settings(TenantResidencySettings):
    service_name: str = "audit-portal"
    # The browser-facing HTTP (TLS belongs to the ingress in front of it).
    http_port: Port = 8080
    # /healthz and /metrics, plain, apart from what browsers reach.
    health_port: Port | None = 8085
    # IG_TRACE_SAMPLE_RATIO: share of the traces started here that are recorded (parent-based: a traced caller's
    # always are). Recording every request's spans cost ~2 ms of CPU per request here; errors and slow requests
    # stay visible in the logs and metrics whatever is sampled.
    trace_sample_ratio: float = Field(default=0.1, ge=0.0, le=1.0)
    # Where browsers reach the portal (redirect URI = public_url + /callback).
    public_url: str = Field(default="http://localhost:8080", pattern=r"^https?://[^/]+$")
    # Proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (comma-separated addresses or networks, e.g.
    # the ingress's); empty: none, the socket peer is the client.
    forwarded_allow_ips: str = Field(default="", pattern=r"^[0-9A-Fa-f:.,/ ]*$")
    # The Swagger UI (/docs, /redoc); /openapi.json is always served.
    docs_enabled: bool = False
    # Expired sessions, stale sign-in attempts and rate-limit buckets that have refilled are deleted this often.
    purge_interval_seconds: float = Field(default=60.0, gt=0, le=3600)
    evidence_target: str = Field(default="127.0.0.1:50052", min_length=3)
    # The evidence service's service-account name: the audience of the user tokens the portal forwards.
    evidence_identity: str = Field(default="evidence", pattern=r"^[a-z0-9][a-z0-9.-]{0,62}$")
    oidc_issuer: str = Field(default="http://127.0.0.1:5556/dex", pattern=r"^https?://")
    # IG_OIDC_CA_FILE: a PEM bundle of the certificates trusted for the issuer's HTTPS (discovery, JWKS, the code
    # exchange), instead of the image's system roots: an issuer served under a private CA (the suite's Dex in a
    # cluster) is trusted without trusting that CA for anything else. Read at start-up; unset: the system roots.
    oidc_ca_file: Path | None = None
    oidc_client_id: str = Field(default="audit-portal", min_length=1)
    oidc_client_secret: str = ""
    # Clients whose tokens are accepted as API bearer tokens (comma-separated): a token's authorized party (azp,
    # or its single aud; Dex puts the requesting client there) must be one of them. Never the browser client:
    # an ID token from the sign-in must not be an API credential.
    oidc_api_clients: str = Field(default="audit-api", pattern=r"^[A-Za-z0-9._:-]+(,[A-Za-z0-9._:-]+)*$")
    # The JWKS is refetched when its Cache-Control max-age runs out, at the latest after this.
    oidc_jwks_max_age_seconds: float = Field(default=3600.0, gt=0, le=86400)
    oidc_clock_skew_seconds: int = Field(default=60, ge=0, le=300)
    oidc_jwks_refetch_seconds: float = Field(default=10.0, ge=0, le=3600)
    # A verified bearer token's claims are reused this long (never past exp); 0 verifies on every request.
    oidc_token_cache_seconds: float = Field(default=300, ge=0, le=3600)
    oidc_groups_claim: str = "groups"
    oidc_tenant_claim: str = "tenant"
    session_lifetime_seconds: int = Field(default=3600, ge=60, le=86400)
    # Set false only for plain-HTTP local runs; the Secure flag keeps cookies off http:// otherwise.
    cookie_secure: bool = True
    # HMAC key of download links; every replica needs the same one. Empty: a random per-process key.
    link_secret: str = ""
    link_ttl_seconds: int = Field(default=300, ge=1, le=86400)
    link_ttl_cap_seconds: int = Field(default=3600, ge=1, le=86400)
    rate_requests_per_minute: float = Field(default=60, gt=0)
    rate_downloads_per_minute: float = Field(default=10, gt=0)
    # The tenant's release list, a release's artifacts and an artifact's metadata are reused this long (per
    # tenant); 0 asks the evidence service on every request. Artifact bytes are always fetched.
    catalog_cache_seconds: float = Field(default=1.0, ge=0, le=60)
    # Every request answers within this (503 past it), however slow the evidence service or PostgreSQL are.
    request_deadline_seconds: float = Field(default=15.0, gt=0, le=300)
    # Requests slower than this are logged one by one (request_slow), whether or not their trace was sampled.
    slow_request_seconds: float = Field(default=0.5, gt=0, le=300)
    ledger_timeout_seconds: float = Field(default=5.0, gt=0)
    # The access log's feed reads the ledger's new access entries this often (a request's own access is in the
    # log at once; other replicas' within about this).
    access_log_feed_seconds: float = Field(default=1.0, gt=0, le=300)
    # The tenants whose access entries the feed reads back from the ledger (comma-separated): the ledger returns one
    # tenant's entries per read, to a reader the authorization table grants that tenant (ledger_readers:
    # audit-portal). Tenants pinned to another region than IG_REGION are not read. Empty: the feed reads nothing
    # (each request still writes its own row).
    access_log_feed_tenants: str = Field(default="", pattern=r"^([a-z0-9][a-z0-9-]{0,62}(,[a-z0-9][a-z0-9-]{0,62})*)?$")
    # An access-log export holds at most this many rows (each with its inclusion proof); a longer one ends with
    # the cursor to continue from.
    access_log_export_max_rows: int = Field(default=10_000, ge=1, le=1_000_000)

    # The release page's verification (ig_portal.api.verification): a result that verified is reused this long per
    # (tenant, release, manifest SHA-256); one that did not is never reused. 0 verifies on every view.
    verification_cache_seconds: float = Field(default=60.0, ge=0, le=3600)
    # How long a page waits for a verification still running; it then goes on, and a later view shows it.
    verification_wait_seconds: float = Field(default=8.0, gt=0, le=300)
    # The evidence contracts the portal holds (comma-separated YAML paths): a manifest's completeness is shown
    # item by item when it names one of them by SHA-256, else only as the signed manifest states it.
    evidence_contracts: str = ""
    # The witnesses whose cosignatures on the ledger's head the page names (comma-separated cosigner verifier keys,
    # name+hash+base64, as `ig-evidence verify --witness-key` takes them). Empty: none is named.
    witness_keys: str = ""
    # The ledger's checkpoint verifier key (name+hash+base64); empty: the key the verify kit names is used.
    ledger_verifier_key: str = ""

    @field_validator("evidence_contracts")
    @classmethod
    def _contracts_load(cls, value: str) -> str:
        for path in filter(None, (p.strip() for p in value.split(","))):
            try:
                load_contract(Path(path))
            except Exception as error:  # a YAML error is no ValueError: it would escape the setting's name
                raise ValueError(f"{path}: not an evidence contract ({error})") from error
        return value

    @field_validator("oidc_ca_file")
    @classmethod
    def _ca_bundle_loads(cls, value: Path | None) -> Path | None:
        if value is not None:
            issuer_trust(value)
        return value

    def oidc_verify(self) -> ssl.SSLContext | bool:
        """What the OIDC client verifies the issuer's certificate with (httpx's ``verify``)."""
        return issuer_trust(self.oidc_ca_file) if self.oidc_ca_file is not None else True

    @field_validator("witness_keys")
    @classmethod
    def _witness_keys_parse(cls, value: str) -> str:
        for key in filter(None, (k.strip() for k in value.split(","))):
            parse_cosigner_key(key)
        return value

    @field_validator("ledger_verifier_key")
    @classmethod
    def _ledger_key_parses(cls, value: str) -> str:
        if value.strip():
            parse_verifier_key(value.strip())
        return value.strip()

    @property
    def contract_paths(self) -> tuple[Path, ...]:
        return tuple(Path(p.strip()) for p in self.evidence_contracts.split(",") if p.strip())

    @property
    def witnesses(self) -> tuple[Cosigner, ...]:
        return tuple(parse_cosigner_key(k.strip()) for k in self.witness_keys.split(",") if k.strip())

    @property
    def feed_tenants(self) -> tuple[str, ...]:
        """The feed's tenants that this region serves (a pinned tenant's entries are not in this region's ledger)."""
        residency = self.residency
        return tuple(t for t in self.access_log_feed_tenants.split(",") if t and residency.refusal(t) is None)

    @property
    def api_clients(self) -> tuple[str, ...]:
        return tuple(self.oidc_api_clients.split(","))

    @model_validator(mode="after")
    def _browser_client_is_no_api_client(self) -> "Settings":
        if self.oidc_client_id in self.api_clients:
            raise ValueError(f"IG_OIDC_API_CLIENTS must not name the sign-in client {self.oidc_client_id!r}: its ID "
                             "tokens would be API credentials")
        return self
    # A download streams for as long as the browser takes, up to this (the evidence stream's own deadline).
    download_timeout_seconds: float = Field(default=3600.0, gt=0, le=86400)
    # PDFs up to this size are stamped (whole, in a worker process killed after pdf_stamp_timeout_seconds);
    # larger ones, and any the worker cannot stamp in time, stream as zip.
    pdf_stamp_max_bytes: int = Field(default=32 << 20, ge=0, le=256 << 20)
    pdf_stamp_timeout_seconds: float = Field(default=10.0, gt=0, le=300)


def issuer_trust(bundle: Path) -> ssl.SSLContext:
    """A client TLS context that trusts exactly the certificates of ``bundle`` (hostname checked); a bundle that is
    missing, unreadable or holds no certificate is refused here, so a bad IG_OIDC_CA_FILE stops start-up instead of
    failing the first sign-in."""
    if not bundle.is_file():
        raise ValueError(f"{bundle} is not a file")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the chain and the issuer's host name
    try:
        context.load_verify_locations(cafile=str(bundle))
    except (OSError, ssl.SSLError) as error:
        raise ValueError(f"{bundle}: not a PEM bundle of certificates ({error})") from error
    if not context.cert_store_stats()["x509"]:
        raise ValueError(f"{bundle}: holds no certificate")
    return context
