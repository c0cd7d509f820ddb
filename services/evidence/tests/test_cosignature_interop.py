"""The witness's cosignatures against an independent implementation: golang.org/x/mod/sumdb/note opening the note
with transparency-dev/formats' cosignature/v1 verifier (built from the Go module proxy, go.sum-pinned, in
tests/interop/cosignature), and the other way round, a cosignature made by that library verified by ours."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from ig_evidence.domain import merkle, note
from ig_evidence.domain.cosignature import Cosigner, cosign, verified_cosignatures, with_cosignatures
from ig_evidence.domain.witness import WitnessedLog, encode_add_checkpoint
from ig_evidence.store.witness_state import WitnessState
from ig_evidence.witness.cosigner import Witness
from ig_infra.paths import Paths

pytestmark = pytest.mark.integration

SOURCE = Path(__file__).parent / "interop" / "cosignature"
ORIGIN = "interop.example/log"


@pytest.fixture(scope="module")
def go_checker() -> Path:
    digest = hashlib.sha256(b"".join((SOURCE / name).read_bytes() for name in ("go.mod", "go.sum", "main.go")))
    binary = Paths.from_environment().cache / f"cosignature-interop-{digest.hexdigest()[:16]}" / "cosignature"
    if not binary.exists():
        binary.parent.mkdir(parents=True, exist_ok=True)
        built = subprocess.run(["go", "build", "-trimpath", "-o", str(binary), "."], cwd=SOURCE,
                               capture_output=True, text=True, timeout=600, env={**os.environ, "CGO_ENABLED": "0"})
        assert built.returncode == 0, built.stderr  # a build failure fails the test: it never skips
    return binary


def go(binary: Path, *args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(binary), *args], input=stdin, capture_output=True, text=True, timeout=60)


def test_the_go_note_library_verifies_what_our_witness_cosigned(go_checker: Path, tmp_path: Path) -> None:
    log_key, witness_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    log_vkey = note.verifier_key(ORIGIN, log_key.public_key())
    leaves = [merkle.leaf_hash(bytes([i]) * 32) for i in range(5)]
    checkpoint = note.sign_checkpoint(note.Checkpoint(ORIGIN, 5, merkle.root_from_leaf_hashes(leaves)), ORIGIN,
                                      log_key)
    witness = Witness("witness.interop/w1", witness_key, [WitnessedLog(ORIGIN, (log_vkey,))],
                      WitnessState(tmp_path / "state.db"))
    cosigned = with_cosignatures(checkpoint, [witness.add_checkpoint(encode_add_checkpoint(0, [], checkpoint))])
    opened = go(go_checker, "verify", log_vkey, witness.cosigner.verifier_key, stdin=cosigned)
    assert opened.returncode == 0, opened.stderr
    assert opened.stdout.split() == [ORIGIN, "witness.interop/w1"]
    # The same line on another checkpoint body: the Go library refuses it too.
    other = note.sign_checkpoint(note.Checkpoint(ORIGIN, 4, merkle.root_from_leaf_hashes(leaves[:4])), ORIGIN,
                                 log_key)
    moved = with_cosignatures(other, [cosigned.splitlines(keepends=True)[-1]])
    refused = go(go_checker, "verify", log_vkey, witness.cosigner.verifier_key, stdin=moved)
    assert refused.returncode != 0


def test_a_cosignature_made_by_the_go_library_verifies_with_ours(go_checker: Path) -> None:
    key = Ed25519PrivateKey.generate()
    seed = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    log_key = Ed25519PrivateKey.generate()
    checkpoint = note.sign_checkpoint(note.Checkpoint(ORIGIN, 3, hashlib.sha256(b"r").digest()), ORIGIN, log_key)
    signed = go(go_checker, "sign", "witness.interop/go", seed.hex(), stdin=checkpoint)
    assert signed.returncode == 0, signed.stderr
    cosigner = Cosigner("witness.interop/go", key.public_key())
    [found] = verified_cosignatures(signed.stdout, [cosigner])
    assert found.witness == "witness.interop/go" and found.timestamp > 0
    # And ours, made over the same body at the same time, is the same line (Ed25519 is deterministic).
    body = checkpoint.partition("\n\n")[0] + "\n"
    assert cosign(body, cosigner.name, key, found.timestamp) == found.line
