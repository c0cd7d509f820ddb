"""Settings of the Evidence + Provenance Ledger, from IG_* environment variables."""

from __future__ import annotations

import os
from pathlib import Path

from ig_common.settings import GrpcServiceSettings, Port, TenantResidencySettings
from pydantic import BaseModel, Field, field_validator, model_validator

from ig_evidence.domain.cosignature import parse_cosigner_key
from ig_evidence.domain.note import NoteError, parse_verifier_key
from ig_evidence.domain.trusted_signers import TrustedSigners
from ig_evidence.domain.upload_limits import UploadLimits
from ig_evidence.signers_file import load_trusted_signers
from ig_evidence.store.signing_key import KEY_FILE_NAME
from ig_evidence.store.witnessing import WitnessEndpoint


class WitnessSetting(BaseModel):
    """One entry of IG_WITNESSES: where a witness's add-checkpoint is, its cosigner verifier key, its identity."""

    url: str = Field(pattern=r"^https://\S+$")
    verifier_key: str
    identity: str = Field(default="witness", pattern=r"^[a-z0-9][a-z0-9-]*$")

    @field_validator("verifier_key")
    @classmethod
    def _cosigner_key(cls, value: str) -> str:
        try:
            parse_cosigner_key(value)
        except NoteError as error:
            raise ValueError(str(error)) from error
        return value


class Settings(GrpcServiceSettings, TenantResidencySettings):
    service_name: str = "evidence"
    grpc_port: Port = 50052
    http_port: Port = 8082
    # IG_PUBLIC_PORT: the ledger as a C2SP tlog-tiles log (/checkpoint, /tile/...), plain HTTP and read-only: a
    # transparency log's checkpoint and tiles are public by design (signed notes and hashes, no payloads), so that
    # a CDN or any standard client can serve and verify them.
    public_port: Port = 8012
    # IG_TRACE_SAMPLE_RATIO: share of the traces started here that are recorded (parent-based: a traced caller's
    # always are). Recording every request's spans cost ~2 ms of CPU per request here; errors and slow requests
    # stay visible in the logs and metrics whatever is sampled.
    trace_sample_ratio: float = Field(default=0.1, ge=0.0, le=1.0)
    # IG_BLOB_STORE_PATH: where registered bundles' artifacts live, content-addressed by sha256.
    blob_store_path: Path = Path("/var/tmp/ig-mc/evidence-blobs")
    # Caps on an upload, checked on its bytes as they arrive (ig_evidence.domain.upload_limits): its size, what it
    # inflates to, its largest member, its member count and its compression ratio. Past one, RegisterBundle answers
    # RESOURCE_EXHAUSTED naming the setting, before anything is unpacked.
    max_bundle_bytes: int = Field(default=2 << 30, ge=1)
    max_uncompressed_bytes: int = Field(default=8 << 30, ge=1)
    max_member_bytes: int = Field(default=2 << 30, ge=1)
    max_members: int = Field(default=10_000, ge=1)
    max_compression_ratio: float = Field(default=200.0, ge=1.0)
    # IG_LEDGER_APPEND_LINGER_MS: how long the ledger's writer, once it has appends from more than one caller in
    # flight, waits for more before it commits them in one statement (Tessera's batching); 0 = commit at once.
    # An append alone (no other caller) never waits.
    ledger_append_linger_ms: float = Field(default=1.0, ge=0.0, le=50.0)

    def upload_limits(self) -> UploadLimits:
        return UploadLimits(max_bundle_bytes=self.max_bundle_bytes,
                            max_uncompressed_bytes=self.max_uncompressed_bytes,
                            max_member_bytes=self.max_member_bytes, max_members=self.max_members,
                            max_compression_ratio=self.max_compression_ratio)

    # IG_TRUSTED_SIGNERS_PATH: per tenant, the keys and Sigstore keyless identities whose bundles RegisterBundle
    # accepts (YAML, domain/trusted_signers.py; the README shows one). Unset: no signer is trusted and every
    # registration is refused. A bundle's own cosign.pub is never trusted.
    trusted_signers_path: Path | None = None

    @model_validator(mode="after")
    def _no_service_wide_key(self) -> Settings:
        if os.environ.get("IG_TRUSTED_PUBLIC_KEY_PATH"):
            raise ValueError("IG_TRUSTED_PUBLIC_KEY_PATH: no longer read; pin signers per tenant in the file "
                             "IG_TRUSTED_SIGNERS_PATH names")
        return self

    def trusted_signers(self) -> TrustedSigners:
        """The pinned signers (TrustedSignersError naming the entry when the file is wrong)."""
        return load_trusted_signers(self.trusted_signers_path) if self.trusted_signers_path else TrustedSigners()

    # IG_LEDGER_ORIGIN: the checkpoints' origin line.
    ledger_origin: str = Field(default="maestro-conductor.dev/evidence-ledger", pattern=r"^[^\s+]+$")
    # IG_LEDGER_KEY_PATH: the Ed25519 checkpoint key (PEM, PKCS#8), a file only (store/signing_key.py). Unset:
    # ledger-checkpoint.key beside the workload certificate ($IG_IDENTITIES/evidence/, where ig-infra makes one).
    ledger_key_path: Path | None = None
    # IG_LEDGER_PREVIOUS_VERIFIER_KEYS: note verifier keys (name+hash+base64) of earlier checkpoint keys, comma
    # separated: the checkpoints they signed stay verifiable after a rotation.
    ledger_previous_verifier_keys: str = ""
    # IG_WITNESSES: the witnesses each new head checkpoint is submitted to (c2sp.org/tlog-witness), JSON:
    # [{"url": "https://host:port", "verifier_key": "<name>+<hash>+<base64(0x04||key)>", "identity": "witness"}].
    # Empty: no witnessing. IG_WITNESS_TIMEOUT_SECONDS: how long the Checkpoint RPC of the head waits for their
    # cosignatures before it answers with what it has (appends never wait).
    witnesses: list[WitnessSetting] = []
    witness_timeout_seconds: float = Field(default=2.0, gt=0, le=60)

    @field_validator("ledger_previous_verifier_keys")
    @classmethod
    def _each_a_verifier_key(cls, value: str) -> str:
        for key in _split(value):
            try:
                parse_verifier_key(key)
            except NoteError as error:
                raise ValueError(f"{key!r}: {error}") from error
        return value

    def previous_verifier_keys(self) -> tuple[str, ...]:
        return _split(self.ledger_previous_verifier_keys)

    def witness_endpoints(self) -> list[WitnessEndpoint]:
        return [WitnessEndpoint(w.url, parse_cosigner_key(w.verifier_key), w.identity) for w in self.witnesses]

    def checkpoint_key_file(self) -> Path:
        return self.ledger_key_path or self.workload_certificate().directory / KEY_FILE_NAME


def _split(keys: str) -> tuple[str, ...]:
    return tuple(key.strip() for key in keys.split(",") if key.strip())
