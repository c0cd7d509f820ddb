"""Witness processes for tests (e2e/test_evidence_witness.py): ``python -m ig_evidence.witness`` started as the
suite's ``witness`` identity from this environment's IG_IDENTITIES, on free ports, until the block ends."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from ig_infra.process import free_port

from ig_evidence.domain.cosignature import Cosigner
from ig_evidence.testing import running


def write_key(path: Path) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    return key


@dataclass(frozen=True)
class RunningWitness:
    name: str
    url: str
    cosigner: Cosigner
    key_path: Path
    state_path: Path


@contextmanager
def witness_process(name: str, key_path: Path, state_path: Path, log_verifier_key: str,
                    port: int | None = None) -> Iterator[RunningWitness]:
    """A witness of the one log whose checkpoints ``log_verifier_key`` verifies (its origin is the key's name, as
    the ledger signs them)."""
    origin = log_verifier_key.split("+", 1)[0]
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    http_port, api_port = free_port(), port or free_port()
    env = {**{k: v for k, v in os.environ.items() if k in ("IG_IDENTITIES", "IG_AUTHZ_TABLE")},
           "IG_SERVICE_NAME": "witness", "IG_HTTP_PORT": str(http_port), "IG_WITNESS_PORT": str(api_port),
           "IG_WITNESS_NAME": name, "IG_WITNESS_KEY_PATH": str(key_path), "IG_WITNESS_STATE_PATH": str(state_path),
           "IG_WITNESS_LOGS": json.dumps([{"origin": origin, "verifier_keys": [log_verifier_key]}])}
    with running([sys.executable, "-m", "ig_evidence.witness"], env, http_port, f"witness {name}"):
        yield RunningWitness(name, f"https://127.0.0.1:{api_port}", Cosigner(name, key.public_key()), key_path,
                             state_path)


