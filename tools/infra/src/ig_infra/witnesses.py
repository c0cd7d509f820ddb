"""The local evidence ledger's witnesses: one ``python -m ig_evidence.witness`` process per region.

Each has its own Ed25519 cosigning key beside the witness workload certificate (``$IG_IDENTITIES/witness/
witness-<region>.key``, made once per run dir and kept, 0600, like the ledger's checkpoint key) and its own
SQLite state under the run dir. The evidence service is told of them through IG_WITNESSES; they are told of the
ledger through IG_WITNESS_LOGS (its origin and the verifier key of ledger-checkpoint.key). The verifier key
strings follow c2sp.org/signed-note (``name+hex(key id)+base64(type || key)``): type 0x01 for the log's note
signatures, 0x04 for cosignature/v1.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ig_infra.ledger_key import ledger_checkpoint_key
from ig_infra.paths import Paths
from ig_infra.pki import _write_private, identities_directory

# The evidence service's default IG_LEDGER_ORIGIN (ig_evidence.settings): the log the witnesses are told of.
LEDGER_ORIGIN = "maestro-conductor.dev/evidence-ledger"
IDENTITY = "witness"


@dataclass(frozen=True)
class LocalWitness:
    region: str
    http_port: int  # /healthz, /metrics
    api_port: int  # POST /add-checkpoint (HTTPS)

    @property
    def name(self) -> str:
        return f"witness.maestro-conductor.dev/{self.region}"

    @property
    def process_name(self) -> str:
        return f"witness-{self.region}"

    def key_path(self, run: Path) -> Path:
        return identities_directory(run) / IDENTITY / f"{self.process_name}.key"

    def state_path(self, paths: Paths) -> Path:
        return paths.component_dir("witnesses") / f"{self.process_name}.db"


# The two regions of tools/region-test.
WITNESSES = (LocalWitness("region-a", 8086, 8096), LocalWitness("region-b", 8087, 8097))


def _private_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey), f"{path}: not an Ed25519 key"
    return key


def _verifier_key(name: str, key: Ed25519PrivateKey, key_type: bytes) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    key_id = hashlib.sha256(name.encode() + b"\n" + key_type + raw).digest()[:4]
    return f"{name}+{key_id.hex()}+{base64.b64encode(key_type + raw).decode()}"


def ensure_witness_keys(run: Path) -> None:
    for witness in WITNESSES:
        path = witness.key_path(run)
        if not path.exists():
            _write_private(path, Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def witness_keys_exist(run: Path) -> bool:
    return all(w.key_path(run).exists() for w in WITNESSES)


def witness_verifier_key(witness: LocalWitness, run: Path) -> str:
    return _verifier_key(witness.name, _private_key(witness.key_path(run)), b"\x04")


def witness_env(witness: LocalWitness, paths: Paths) -> dict[str, str]:
    """A witness process's own settings (its identity, port and the ledger it witnesses)."""
    ledger = _verifier_key(LEDGER_ORIGIN, _private_key(ledger_checkpoint_key(paths.run)), b"\x01")
    return {"IG_SERVICE_NAME": IDENTITY, "IG_REGION": witness.region, "IG_WITNESS_NAME": witness.name,
            "IG_WITNESS_KEY_PATH": str(witness.key_path(paths.run)),
            "IG_WITNESS_STATE_PATH": str(witness.state_path(paths)),
            "IG_WITNESS_LOGS": json.dumps([{"origin": LEDGER_ORIGIN, "verifier_keys": [ledger]}])}


def evidence_witnesses_env(paths: Paths) -> dict[str, str]:
    """IG_WITNESSES for the evidence service: every local witness, its URL and cosigner verifier key."""
    return {"IG_WITNESSES": json.dumps([{"url": f"https://127.0.0.1:{w.api_port}",
                                         "verifier_key": witness_verifier_key(w, paths.run), "identity": IDENTITY}
                                        for w in WITNESSES])}


def portal_verification_env(paths: Paths) -> dict[str, str]:
    """What the audit portal pins to verify releases on its page: the ledger's checkpoint key, the local witnesses'
    cosigner keys, and the evidence contract the release job builds against."""
    ledger = _verifier_key(LEDGER_ORIGIN, _private_key(ledger_checkpoint_key(paths.run)), b"\x01")
    return {"IG_LEDGER_VERIFIER_KEY": ledger,
            "IG_WITNESS_KEYS": ",".join(witness_verifier_key(w, paths.run) for w in WITNESSES),
            "IG_EVIDENCE_CONTRACTS": str(paths.repo / "policies" / "evidence" / "release-contract.v1.yaml")}
