"""Witnesses of the evidence ledger as real processes (``python -m ig_evidence.witness``, HTTPS + workload tokens)
in front of the real PostgreSQL-backed evidence service: head checkpoints come back cosigned, consistency is
enforced, a history rewritten below the service and re-signed with the log's own key is refused, what a witness
cosigned survives its restart, and a witness that is down does not hold up the ledger."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from ig.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from ig_common.grpc_client import channel_as
from ig_common.http_client import client_as
from ig_evidence.domain import merkle, note
from ig_evidence.domain.chain import EntryFields, entry_hash
from ig_evidence.domain.cosignature import Cosigner, verified_cosignatures
from ig_evidence.domain.witness import encode_add_checkpoint
from ig_evidence.testing import RunningEvidence, evidence_service, evidence_stub, pin
from ig_evidence.witness.testing import RunningWitness, witness_process, write_key
from ig_infra.process import free_port

pytestmark = pytest.mark.e2e

ORIGIN = "e2e.maestro-conductor.dev/witnessed-ledger"


REPO = Path(__file__).resolve().parents[1]
COLLECTED_TYPES = ["load-report", "chaos-report", "aca-report", "dr-log", "rtbf-log", "residency-proof", "slo-report",
                   "decision-coverage", "multi-region", "migration-timeline"]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ig_evidence.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "SOURCE_DATE_EPOCH": "1767225600"}, cwd=REPO, timeout=300)


@dataclass(frozen=True)
class Setup:
    service: RunningEvidence
    witnesses: list[RunningWitness]
    ledger_key: Ed25519PrivateKey
    ledger_key_path: Path
    dead_witness_url: str
    env: dict[str, str]  # the evidence service's, to start another replica on the same database
    release_keys: Path  # cosign.key/cosign.pub, pinned for tenant alpha


@contextmanager
def witnessed_ledger(infra: Any, tmp: Path) -> Iterator[Setup]:
    """A private database, the evidence service with its own checkpoint key, two witnesses and a third that is
    configured but never started (down)."""
    ledger_key_path = tmp / "ledger.key"
    ledger_key = write_key(ledger_key_path)
    log_vkey = note.verifier_key(ORIGIN, ledger_key.public_key())
    own_url = infra.new_database("ig_witness")
    assert cli("keygen", "--out", str(tmp / "release-keys")).returncode == 0
    signers = pin(tmp / "release-keys" / "cosign.pub", tmp / "signers.yaml", "alpha")
    dead = Cosigner("witness.e2e/down", Ed25519PrivateKey.generate().public_key())
    dead_url = f"https://127.0.0.1:{free_port()}"
    try:
        write_key(tmp / "a.key")
        write_key(tmp / "b.key")
        with witness_process("witness.e2e/region-a", tmp / "a.key", tmp / "a.db", log_vkey) as a, \
             witness_process("witness.e2e/region-b", tmp / "b.key", tmp / "b.db", log_vkey) as b:
            witnesses = [{"url": w.url, "verifier_key": w.cosigner.verifier_key} for w in (a, b)]
            witnesses.append({"url": dead_url, "verifier_key": dead.verifier_key})
            env = {**infra.env(own_url, "evidence"), "IG_LEDGER_KEY_PATH": str(ledger_key_path),
                   "IG_LEDGER_ORIGIN": ORIGIN, "IG_WITNESSES": json.dumps(witnesses),
                   "IG_WITNESS_TIMEOUT_SECONDS": "3", "IG_TRUSTED_SIGNERS_PATH": str(signers)}
            (tmp / "blobs").mkdir(exist_ok=True)
            with evidence_service(env, own_url, tmp / "blobs") as service:
                yield Setup(service, [a, b], ledger_key, ledger_key_path, dead_url, env, tmp / "release-keys")
    finally:
        infra.drop_database(own_url)


@pytest.fixture(scope="module")
def setup(infra: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    with witnessed_ledger(infra, tmp_path_factory.mktemp("witnessed")) as running:
        yield running


def ledger(setup: Setup, identity: str = "release") -> ledger_pb2_grpc.LedgerServiceStub:
    return ledger_pb2_grpc.LedgerServiceStub(channel_as(identity, setup.service.grpc_target))


def append(setup: Setup, count: int, tag: str) -> int:
    stub = ledger(setup)
    seq = 0
    for i in range(count):
        seq = stub.Append(ledger_pb2.AppendRequest(kind="release.e2e-witness", subject=f"{tag}-{i}",
                                                   payload=b"x", tenant="alpha")).entry.seq
    return seq


def cosigners(setup: Setup) -> list[Cosigner]:
    return [w.cosigner for w in setup.witnesses]


def test_a_head_checkpoint_comes_back_cosigned_by_each_witness_that_is_up(setup: Setup) -> None:
    size = append(setup, 5, "head")
    started = time.monotonic()
    head = ledger(setup, "operator").Checkpoint(ledger_pb2.CheckpointRequest())
    elapsed = time.monotonic() - started
    assert head.tree_size == size
    found = verified_cosignatures(head.cosigned_note, cosigners(setup))
    assert sorted(c.witness for c in found) == ["witness.e2e/region-a", "witness.e2e/region-b"]
    assert head.cosigned_note.startswith(head.note) and verified_cosignatures(head.note, cosigners(setup)) == []
    # The third witness is down: the answer waited for it at most IG_WITNESS_TIMEOUT_SECONDS (3 s), no longer.
    assert elapsed < 6, elapsed
    # A past size is a bundle's anchor: the note stays deterministic and nothing waits.
    past = ledger(setup, "operator").Checkpoint(ledger_pb2.CheckpointRequest(tree_size=size - 1))
    assert past.cosigned_note == past.note


def test_appends_do_not_wait_for_a_witness_that_is_down(setup: Setup) -> None:
    started = time.monotonic()
    append(setup, 20, "fast")
    assert time.monotonic() - started < 5
    head = ledger(setup, "operator").Checkpoint(ledger_pb2.CheckpointRequest())
    assert len(verified_cosignatures(head.cosigned_note, cosigners(setup))) == 2


def submit(witness: RunningWitness, body: bytes, identity: str = "evidence") -> httpx.Response:
    with client_as(identity, witness.url, "witness", timeout=10) as client:
        return client.post("/add-checkpoint", content=body)


def current_tree(setup: Setup) -> tuple[list[bytes], str]:
    async def read() -> list[bytes]:
        conn = await asyncpg.connect(setup.service.database_url)
        try:
            rows = await conn.fetch("SELECT entry_hash FROM evidence.ledger_entries ORDER BY seq")
        finally:
            await conn.close()
        return [merkle.leaf_hash(bytes.fromhex(r["entry_hash"])) for r in rows]

    leaves = asyncio.run(read())
    signed = note.sign_checkpoint(note.Checkpoint(ORIGIN, len(leaves), merkle.root_from_leaf_hashes(leaves)),
                                  ORIGIN, setup.ledger_key)
    return leaves, signed


def test_the_witness_enforces_consistency_over_https(setup: Setup) -> None:
    append(setup, 3, "consistency")
    head = ledger(setup, "operator").Checkpoint(ledger_pb2.CheckpointRequest())
    witness = setup.witnesses[0]
    append(setup, 4, "consistency-more")
    leaves, signed = current_tree(setup)
    # A stale old size: 409, text/x.tlog.size, the size the witness holds.
    stale = submit(witness, encode_add_checkpoint(1, merkle.consistency_proof(leaves, 1), signed))
    assert stale.status_code == 409
    assert stale.headers["content-type"].startswith("text/x.tlog.size")
    assert stale.text == f"{head.tree_size}\n"
    # The right old size with a wrong proof: 422.
    proof = merkle.consistency_proof(leaves, head.tree_size)
    wrong = submit(witness, encode_add_checkpoint(head.tree_size, [bytes(32)] * len(proof), signed))
    assert wrong.status_code == 422, wrong.text
    assert wrong.headers["content-type"] == "application/problem+json"
    # Not the log's key: 403. Not a known log: 404. Malformed: 400.
    stranger = Ed25519PrivateKey.generate()
    forged = note.sign_checkpoint(note.Checkpoint(ORIGIN, len(leaves), merkle.root_from_leaf_hashes(leaves)),
                                  ORIGIN, stranger)
    assert submit(witness, encode_add_checkpoint(head.tree_size, proof, forged)).status_code == 403
    other = note.sign_checkpoint(note.Checkpoint("other.example/log", 1, bytes(32)), "other.example/log", stranger)
    assert submit(witness, encode_add_checkpoint(0, [], other)).status_code == 404
    assert submit(witness, b"old x\n\n").status_code == 400
    # And the right proof is cosigned.
    good = submit(witness, encode_add_checkpoint(head.tree_size, proof, signed))
    assert good.status_code == 200 and good.text.startswith("\u2014 witness.e2e/region-a ")


def test_the_endpoint_needs_a_token_the_table_grants(setup: Setup) -> None:
    witness = setup.witnesses[1]
    refused = submit(witness, b"old 0\n\n", identity="release")  # a known identity, not granted the route
    assert refused.status_code == 403 and "POST /add-checkpoint" in refused.json()["detail"]
    with client_as("evidence", witness.url, "witness") as client:
        client.auth = None  # type: ignore[assignment]
        assert client.post("/add-checkpoint", content=b"old 0\n\n").status_code == 401


def test_verify_requires_witness_cosignatures_on_the_head_its_anchor_is_in(setup: Setup, tmp_path: Path) -> None:
    assert cli("keygen", "--out", str(tmp_path / "keys")).returncode == 0
    for artifact_type in COLLECTED_TYPES:
        (tmp_path / "in" / artifact_type).mkdir(parents=True)
        (tmp_path / "in" / artifact_type / f"{artifact_type}.json").write_text('{"ok": true}\n')
    out = tmp_path / "out"
    built = cli("build", "--release", "v1.2.1", "--inputs", str(tmp_path / "in"), "--out", str(out), "--key",
                str(tmp_path / "keys/cosign.key"), "--ledger", setup.service.grpc_target, "--tenant", "alpha")
    assert built.returncode == 0, built.stderr
    append(setup, 3, "after-build")  # the head moves on: the kit proves consistency from the anchor to it
    written = cli("checkpoint", "--ledger", setup.service.grpc_target, "--bundle", str(out), "--out",
                  str(tmp_path / "witnessed.json"))
    assert written.returncode == 0, written.stderr
    document = json.loads((tmp_path / "witnessed.json").read_text())
    assert len(document["consistency"]) == 1
    a, b = (w.cosigner.verifier_key for w in setup.witnesses)
    base = ["verify", str(out), "--key", str(tmp_path / "keys/cosign.pub")]

    uncosigned = cli(*base, "--witness-key", a, "--min-witnesses", "1")
    assert uncosigned.returncode == 1
    assert "0 valid witness cosignature(s), 1 required" in uncosigned.stderr, uncosigned.stderr
    both = cli(*base, "--checkpoint", str(tmp_path / "witnessed.json"), "--witness-key", a, "--witness-key", b,
               "--min-witnesses", "2")
    assert both.returncode == 0, both.stderr
    assert "cosigned by witness.e2e/region-a, witness.e2e/region-b" in both.stdout
    # A cosignature by a key the verifier did not pin does not count.
    stranger = Cosigner("witness.e2e/region-a", Ed25519PrivateKey.generate().public_key()).verifier_key
    unknown = cli(*base, "--checkpoint", str(tmp_path / "witnessed.json"), "--witness-key", stranger)
    assert unknown.returncode == 1 and "0 valid witness cosignature(s)" in unknown.stderr, unknown.stderr
    # The same head with its cosignature lines stripped: refused.
    stripped = dict(document, checkpoint=document["checkpoint"].split("\n\u2014 ")[0] + "\n\u2014 " +
                    document["checkpoint"].split("\n\u2014 ")[1].split("\n")[0] + "\n")
    (tmp_path / "stripped.json").write_text(json.dumps(stripped))
    refused = cli(*base, "--checkpoint", str(tmp_path / "stripped.json"), "--witness-key", a)
    assert refused.returncode == 1 and "0 valid witness cosignature(s), 1 required" in refused.stderr
    assert cli(*base, "--witness-key", a, "--min-witnesses", "2").returncode == 2  # more than the keys given


def test_a_verify_kit_carries_the_witnesses_cosignatures_and_verify_requires_them(setup: Setup,
                                                                                   tmp_path: Path) -> None:
    from ig.evidence.v1 import evidence_pb2
    from ig_evidence.bundle.upload import register_requests

    out = tmp_path / "bundle"
    for artifact_type in COLLECTED_TYPES:
        (tmp_path / "in" / artifact_type).mkdir(parents=True)
        (tmp_path / "in" / artifact_type / f"{artifact_type}.json").write_text('{"ok": true}\n')
    built = cli("build", "--release", "v7.7.7", "--inputs", str(tmp_path / "in"), "--out", str(out), "--key",
                str(setup.release_keys / "cosign.key"), "--ledger", setup.service.grpc_target, "--tenant", "alpha")
    assert built.returncode == 0, built.stderr
    evidence_stub(setup.service).RegisterBundle(register_requests(out / "evidence-v7.7.7.tar.gz", "v7.7.7", "alpha"))
    parts = list(evidence_stub(setup.service).GetVerifyKit(
        evidence_pb2.GetVerifyKitRequest(release="v7.7.7", tenant="alpha")))
    kit = tmp_path / "evidence-kit-v7.7.7.tar"
    kit.write_bytes(b"".join(p.chunk for p in parts[1:]))
    a, b = (w.cosigner.verifier_key for w in setup.witnesses)
    both = cli("verify", str(kit), "--key-id", parts[0].info.signer_key_id, "--witness-key", a, "--witness-key", b,
               "--min-witnesses", "2")
    assert both.returncode == 0, both.stderr
    assert "cosigned by witness.e2e/region-a, witness.e2e/region-b" in both.stdout
    stranger = Cosigner("witness.e2e/region-a", Ed25519PrivateKey.generate().public_key()).verifier_key
    unknown = cli("verify", str(kit), "--witness-key", stranger)
    assert unknown.returncode == 1 and "0 valid witness cosignature(s), 1 required" in unknown.stderr
    assert cli("verify", str(kit)).returncode == 0  # without witness keys the kit verifies as before


# Last on purpose: it rewrites this module's private ledger.
def test_a_rewritten_history_resigned_with_the_log_key_is_refused_by_the_witnesses(setup: Setup) -> None:
    append(setup, 4, "before-rewrite")
    honest = ledger(setup, "operator").Checkpoint(ledger_pb2.CheckpointRequest())
    assert len(verified_cosignatures(honest.cosigned_note, cosigners(setup))) == 2

    async def rewrite() -> None:
        """As the superuser: entry 3 changed, every later entry re-chained, the head moved, the checkpoints
        re-signed with the log's own key, so that the ledger's own Verify finds nothing wrong."""
        conn = await asyncpg.connect(setup.service.database_url)
        try:
            await conn.execute("SET session_replication_role = replica")
            async with conn.transaction():
                rows = await conn.fetch("SELECT * FROM evidence.ledger_entries ORDER BY seq")
                prev = rows[1]["entry_hash"]
                for row in rows[2:]:
                    subject = "rewritten" if row["seq"] == 3 else row["subject"]
                    fields = EntryFields(seq=row["seq"], ts=row["ts"], kind=row["kind"], subject=subject,
                                         payload_sha256=row["payload_sha256"], prev_hash=prev)
                    prev = entry_hash(fields)
                    await conn.execute("UPDATE evidence.ledger_entries SET subject = $1, prev_hash = $2, "
                                       "entry_hash = $3 WHERE seq = $4", subject, fields.prev_hash, prev, row["seq"])
                await conn.execute("UPDATE evidence.ledger_head SET head_hash = $1", prev)
                # The tiles too: dropped with the integrated tree reset, so the service rebuilds them from the
                # rewritten entries and its Verify finds them consistent.
                await conn.execute("DELETE FROM evidence.ledger_tiles")
                await conn.execute("UPDATE evidence.ledger_tree SET size = 0, root_hash = sha256(''::bytea)")
                leaves = [merkle.leaf_hash(bytes.fromhex(r["entry_hash"])) for r in
                          await conn.fetch("SELECT entry_hash FROM evidence.ledger_entries ORDER BY seq")]
                for checkpoint in await conn.fetch("SELECT tree_size FROM evidence.ledger_checkpoints"):
                    size = checkpoint["tree_size"]
                    root = merkle.root_from_leaf_hashes(leaves[:size])
                    await conn.execute("UPDATE evidence.ledger_checkpoints SET root_hash = $1, note = $2 "
                                       "WHERE tree_size = $3", root.hex(),
                                       note.sign_checkpoint(note.Checkpoint(ORIGIN, size, root), ORIGIN,
                                                            setup.ledger_key), size)
        finally:
            await conn.close()

    asyncio.run(rewrite())
    leaves, signed = current_tree(setup)
    # Submitted directly, with the best proof the rewritten log can make: refused, 422.
    for witness in setup.witnesses:
        answer = submit(witness, encode_add_checkpoint(honest.tree_size,
                                                       merkle.consistency_proof(leaves, honest.tree_size), signed))
        assert answer.status_code == 422, answer.text
    # Through a fresh replica of the evidence service on the rewritten database (no cache of the honest leaves):
    # its own Verify passes, since the checkpoints were re-signed, yet no witness cosigns its next head.
    with evidence_service(setup.env, setup.service.database_url, setup.service.blob_dir) as replica:
        stub = ledger_pb2_grpc.LedgerServiceStub(channel_as("release", replica.grpc_target))
        stub.Append(ledger_pb2.AppendRequest(kind="release.e2e-witness", subject="after-rewrite", payload=b"x",
                                              tenant="alpha"))
        assert stub.Verify(ledger_pb2.VerifyRequest()).ok
        head = stub.Checkpoint(ledger_pb2.CheckpointRequest())
        assert head.tree_size > honest.tree_size
        assert verified_cosignatures(head.cosigned_note, cosigners(setup)) == []
        # And the rewritten checkpoint of the size they did cosign no longer carries their cosignatures.
        again = stub.Checkpoint(ledger_pb2.CheckpointRequest(tree_size=honest.tree_size))
        assert again.root_hash != honest.root_hash and again.cosigned_note == again.note


def test_what_a_witness_cosigned_survives_its_restart(infra: Any, tmp_path: Path) -> None:
    log_key = Ed25519PrivateKey.generate()
    log_vkey = note.verifier_key(ORIGIN, log_key.public_key())
    write_key(tmp_path / "w.key")
    leaves = [merkle.leaf_hash(bytes([i]) * 32) for i in range(6)]

    def signed(n: int) -> str:
        return note.sign_checkpoint(note.Checkpoint(ORIGIN, n, merkle.root_from_leaf_hashes(leaves[:n])), ORIGIN,
                                    log_key)

    with witness_process("witness.e2e/restart", tmp_path / "w.key", tmp_path / "w.db", log_vkey) as witness:
        assert submit(witness, encode_add_checkpoint(0, [], signed(6))).status_code == 200
    with witness_process("witness.e2e/restart", tmp_path / "w.key", tmp_path / "w.db", log_vkey) as witness:
        rolled_back = submit(witness, encode_add_checkpoint(0, [], signed(3)))
        assert (rolled_back.status_code, rolled_back.text) == (409, "6\n")
        assert submit(witness, encode_add_checkpoint(6, [], signed(6))).status_code == 200


def test_a_witness_without_a_usable_key_does_not_start(infra: Any, tmp_path: Path) -> None:
    write_key(tmp_path / "open.key")
    (tmp_path / "open.key").chmod(0o644)
    env = {**{k: v for k, v in os.environ.items() if k in ("IG_IDENTITIES", "IG_AUTHZ_TABLE", "PATH")},
           "IG_SERVICE_NAME": "witness", "IG_HTTP_PORT": str(free_port()), "IG_WITNESS_PORT": str(free_port()),
           "IG_WITNESS_KEY_PATH": str(tmp_path / "open.key"), "IG_WITNESS_STATE_PATH": str(tmp_path / "s.db"),
           "IG_WITNESS_LOGS": json.dumps([{"origin": ORIGIN, "verifier_keys": [
               note.verifier_key(ORIGIN, Ed25519PrivateKey.generate().public_key())]}])}
    done = subprocess.run([sys.executable, "-m", "ig_evidence.witness"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert "invalid setting IG_WITNESS_KEY_PATH" in done.stderr and "open to every user" in done.stderr
    assert not (tmp_path / "s.db").exists()


def test_a_witness_that_was_down_is_caught_up_by_the_next_head(infra: Any, tmp_path: Path) -> None:
    ledger_key = write_key(tmp_path / "ledger.key")
    log_vkey = note.verifier_key(ORIGIN, ledger_key.public_key())
    witness_key = write_key(tmp_path / "w.key")
    cosigner = Cosigner("witness.e2e/flaky", witness_key.public_key())
    port = free_port()
    own_url = infra.new_database("ig_witness")
    (tmp_path / "blobs").mkdir()
    env = {**infra.env(own_url, "evidence"), "IG_LEDGER_KEY_PATH": str(tmp_path / "ledger.key"),
           "IG_LEDGER_ORIGIN": ORIGIN, "IG_WITNESS_TIMEOUT_SECONDS": "2",
           "IG_WITNESSES": json.dumps([{"url": f"https://127.0.0.1:{port}", "verifier_key": cosigner.verifier_key}])}
    try:
        with evidence_service(env, own_url, tmp_path / "blobs") as service:
            stub = ledger_pb2_grpc.LedgerServiceStub(channel_as("release", service.grpc_target))

            def head_after(appends: int) -> ledger_pb2.CheckpointResponse:
                for i in range(appends):
                    stub.Append(ledger_pb2.AppendRequest(kind="release.e2e-witness", subject=f"f{i}", payload=b"x",
                                                              tenant="alpha"))
                return stub.Checkpoint(ledger_pb2.CheckpointRequest())

            down = head_after(3)
            assert down.tree_size == 3 and down.cosigned_note == down.note
            with witness_process(cosigner.name, tmp_path / "w.key", tmp_path / "w.db", log_vkey, port=port):
                up = head_after(2)
                assert [c.witness for c in verified_cosignatures(up.cosigned_note, [cosigner])] == [cosigner.name]
            missed = head_after(2)
            assert missed.cosigned_note == missed.note
            with witness_process(cosigner.name, tmp_path / "w.key", tmp_path / "w.db", log_vkey, port=port):
                back = head_after(1)  # from the size it held (5) to 8, over the head it missed (7)
                assert back.tree_size == 8
                assert [c.witness for c in verified_cosignatures(back.cosigned_note, [cosigner])] == [cosigner.name]
    finally:
        infra.drop_database(own_url)
