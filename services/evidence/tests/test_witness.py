"""The witness's rules (c2sp.org/tlog-witness) and cosignatures (c2sp.org/tlog-cosignature), with its real SQLite
state: what it cosigns, what it refuses with which status, and that what it cosigned survives a restart."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import threading
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from ig_evidence.domain import merkle, note
from ig_evidence.domain.cosignature import (
    Cosigner,
    cosign,
    parse_cosigner_key,
    require_cosignatures,
    verified_cosignatures,
    with_cosignatures,
)
from ig_evidence.domain.witness import (
    WitnessedLog,
    WitnessRefusal,
    encode_add_checkpoint,
    parse_add_checkpoint,
)
from ig_evidence.domain.witnessed import WitnessedCheckpoint, WitnessedError, from_document, verify_witnessed
from ig_evidence.store.witness_state import WitnessState
from ig_evidence.witness.cosigner import Witness

ORIGIN = "example.test/log"
LOG_KEY = Ed25519PrivateKey.generate()
LOG = WitnessedLog(ORIGIN, (note.verifier_key(ORIGIN, LOG_KEY.public_key()),))


def leaves(n: int, tag: str = "") -> list[bytes]:
    return [merkle.leaf_hash(hashlib.sha256(f"{tag}{i}".encode()).digest()) for i in range(n)]


def signed(tree: list[bytes], key: Ed25519PrivateKey = LOG_KEY, origin: str = ORIGIN) -> str:
    return note.sign_checkpoint(note.Checkpoint(origin, len(tree), merkle.root_from_leaf_hashes(tree)), origin, key)


def submit(witness: Witness, old: int, tree: list[bytes], proof: list[bytes] | None = None,
           key: Ed25519PrivateKey = LOG_KEY) -> str:
    if proof is None:
        proof = merkle.consistency_proof(tree, old) if old else []
    return witness.add_checkpoint(encode_add_checkpoint(old, proof, signed(tree, key)))


def refusal(witness: Witness, *args: object, **kwargs: object) -> WitnessRefusal:
    with pytest.raises(WitnessRefusal) as caught:
        submit(witness, *args, **kwargs)  # type: ignore[arg-type]
    return caught.value


@pytest.fixture
def witness_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def witness(tmp_path: Path, witness_key: Ed25519PrivateKey) -> Witness:
    return Witness("witness.test/w1", witness_key, [LOG], WitnessState(tmp_path / "state.db"))


# -- cosignatures ---------------------------------------------------------------------------------------------------

def test_a_cosignature_is_the_c2sp_timestamped_ed25519_line(witness_key: Ed25519PrivateKey) -> None:
    body = note.Checkpoint(ORIGIN, 5, b"\x01" * 32).body()
    line = cosign(body, "witness.test/w1", witness_key, 1_679_315_147)
    name, encoded = line.removeprefix("\u2014 ").rstrip("\n").split(" ")
    raw = base64.b64decode(encoded)
    public = witness_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert name == "witness.test/w1" and len(raw) == 76
    assert raw[:4] == hashlib.sha256(b"witness.test/w1\n\x04" + public).digest()[:4]
    assert struct.unpack(">Q", raw[4:12]) == (1_679_315_147,)
    witness_key.public_key().verify(raw[12:], f"cosignature/v1\ntime 1679315147\n{body}".encode())


def test_cosignatures_verify_and_an_unknown_key_does_not_count(witness_key: Ed25519PrivateKey) -> None:
    tree = leaves(3)
    checkpoint = signed(tree)
    body = checkpoint.partition("\n\n")[0] + "\n"
    stranger = Ed25519PrivateKey.generate()
    known = Cosigner("witness.test/w1", witness_key.public_key())
    cosigned = with_cosignatures(checkpoint, [cosign(body, known.name, witness_key, 100),
                                              cosign(body, "witness.test/w2", stranger, 100)])
    assert [c.witness for c in verified_cosignatures(cosigned, [known])] == ["witness.test/w1"]
    # The same name as a known witness but another key: ignored (signed-note), so it never counts.
    impostor = with_cosignatures(checkpoint, [cosign(body, known.name, stranger, 100)])
    assert verified_cosignatures(impostor, [known]) == []
    with pytest.raises(note.NoteError, match="0 valid witness cosignature"):
        require_cosignatures(impostor, [known], 1)
    with pytest.raises(note.NoteError, match="0 valid witness cosignature"):
        require_cosignatures(checkpoint, [known], 1)
    assert len(require_cosignatures(cosigned, [known], 1)) == 1
    assert parse_cosigner_key(known.verifier_key) == known


def test_a_forged_cosignature_of_a_known_witness_refuses_the_note(witness_key: Ed25519PrivateKey) -> None:
    checkpoint = signed(leaves(2))
    line = cosign(checkpoint.partition("\n\n")[0] + "\n", "witness.test/w1", witness_key, 100)
    raw = bytearray(base64.b64decode(line.split(" ")[-1]))
    raw[11] ^= 1  # another timestamp than the one signed
    forged = with_cosignatures(checkpoint, [f"\u2014 witness.test/w1 {base64.b64encode(bytes(raw)).decode()}\n"])
    with pytest.raises(note.NoteError, match="does not verify"):
        verified_cosignatures(forged, [Cosigner("witness.test/w1", witness_key.public_key())])


# -- add-checkpoint ---------------------------------------------------------------------------------------------------

def test_the_witness_cosigns_a_consistent_checkpoint_and_the_log_can_verify_it(witness: Witness) -> None:
    tree = leaves(10)
    first = submit(witness, 0, tree[:4])
    assert verified_cosignatures(with_cosignatures(signed(tree[:4]), [first]), [witness.cosigner])
    second = submit(witness, 4, tree)
    [cosignature] = verified_cosignatures(with_cosignatures(signed(tree), [second]), [witness.cosigner])
    assert cosignature.witness == "witness.test/w1" and cosignature.timestamp > 0
    assert submit(witness, 10, tree)  # the same head again: cosigned again, nothing moves


@pytest.mark.parametrize(("body", "why"), [
    (b"", "old <size>"), (b"old 01\n\n", "leading zeroes"), (b"old x\n\n", "decimal"),
    (b"old 0\nnot base64!\n\n", "not base64"), (b"old 0\n" + base64.b64encode(b"short") + b"\n\n", "32-byte"),
    (b"old 0\n", "no empty line"), (b"old 0\n\n", "no checkpoint"),
    (b"old 0\n" + b"".join(base64.b64encode(bytes(32)) + b"\n" for _ in range(64)) + b"\n", "more than 63"),
])
def test_a_malformed_request_is_400(body: bytes, why: str) -> None:
    with pytest.raises(WitnessRefusal, match=why) as caught:
        parse_add_checkpoint(body)
    assert caught.value.status == 400


def test_an_unknown_log_is_404_and_a_bad_signature_403(witness: Witness) -> None:
    tree = leaves(3)
    stranger = Ed25519PrivateKey.generate()
    with pytest.raises(WitnessRefusal) as caught:
        witness.add_checkpoint(encode_add_checkpoint(0, [], signed(tree, stranger, "other.test/log")))
    assert caught.value.status == 404
    assert refusal(witness, 0, tree, key=stranger).status == 403
    tampered = signed(tree).replace("\n3\n", "\n2\n", 1)
    with pytest.raises(WitnessRefusal) as caught:
        witness.add_checkpoint(encode_add_checkpoint(0, [], tampered))
    assert caught.value.status == 403


def test_a_stale_old_size_is_409_with_the_size_last_cosigned(witness: Witness) -> None:
    tree = leaves(9)
    submit(witness, 0, tree[:5])
    stale = refusal(witness, 0, tree)
    assert (stale.status, stale.latest_size) == (409, 5)
    assert refusal(witness, 3, tree).latest_size == 5
    assert refusal(witness, 9, tree[:5], proof=[]).status == 400  # old above the checkpoint's size


def test_a_wrong_consistency_proof_is_422(witness: Witness) -> None:
    tree = leaves(12)
    submit(witness, 0, tree[:7])
    good = merkle.consistency_proof(tree, 7)
    assert refusal(witness, 7, tree, proof=good[:-1]).status == 422
    assert refusal(witness, 7, tree, proof=[bytes(32)] * len(good)).status == 422
    assert refusal(witness, 0, tree[:7], proof=[bytes(32)]).status in (409, 422)
    assert submit(witness, 7, tree, proof=good)


def test_a_rewritten_history_resigned_with_the_log_key_is_refused(witness: Witness) -> None:
    tree = leaves(8)
    submit(witness, 0, tree)
    rewritten = leaves(3) + leaves(7, "forged")  # entry 4 changed, the log grew on top, and the log key re-signed
    forged = refusal(witness, 8, rewritten, proof=merkle.consistency_proof(rewritten, 8))
    assert forged.status == 422
    same_size = refusal(witness, 8, leaves(7) + leaves(1, "forged"))
    assert same_size.status == 422
    assert submit(witness, 8, tree + leaves(2, "honest"))  # the honest log still gets cosigned


def test_what_was_cosigned_survives_a_restart(tmp_path: Path, witness_key: Ed25519PrivateKey) -> None:
    tree = leaves(6)
    first = Witness("witness.test/w1", witness_key, [LOG], WitnessState(tmp_path / "state.db"))
    submit(first, 0, tree)
    restarted = Witness("witness.test/w1", witness_key, [LOG], WitnessState(tmp_path / "state.db"))
    assert refusal(restarted, 0, tree[:2]).latest_size == 6  # it cannot be rolled back to a smaller tree
    assert restarted.latest_checkpoint(ORIGIN) is not None
    assert submit(restarted, 6, tree + leaves(1, "x"))


def test_two_racing_requests_cannot_roll_the_witness_back(tmp_path: Path, witness_key: Ed25519PrivateKey) -> None:
    """Both are decided against size 4; only the first store wins, the second gets 409 with the winner's size."""
    state = WitnessState(tmp_path / "state.db")
    witness = Witness("witness.test/w1", witness_key, [LOG], state)
    tree = leaves(20)
    submit(witness, 0, tree[:4])
    decided = threading.Barrier(2)
    real_latest = state.latest

    def latest_then_wait(origin: str) -> object:
        head = real_latest(origin)
        decided.wait(timeout=5)
        return head

    state.latest = latest_then_wait  # type: ignore[method-assign]
    outcomes: dict[int, object] = {}

    def run(size: int) -> None:
        try:
            outcomes[size] = submit(witness, 4, tree[:size])
        except WitnessRefusal as error:
            outcomes[size] = error

    threads = [threading.Thread(target=run, args=(size,)) for size in (20, 10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    refused = [o for o in outcomes.values() if isinstance(o, WitnessRefusal)]
    assert len(refused) == 1 and refused[0].status == 409
    winner = next(size for size, o in outcomes.items() if isinstance(o, str))
    state.latest = real_latest  # type: ignore[method-assign]
    assert state.latest(ORIGIN).size == winner  # type: ignore[union-attr]


# -- verifying a bundle's anchor against a witnessed head -----------------------------------------------------------

def witnessed_head(tree: list[bytes], anchored_size: int, cosigning: list[tuple[str, Ed25519PrivateKey]]
                   ) -> WitnessedCheckpoint:
    head = signed(tree)
    body = head.partition("\n\n")[0] + "\n"
    cosigned = with_cosignatures(head, [cosign(body, name, key, 1_700_000_000) for name, key in cosigning])
    return WitnessedCheckpoint(cosigned, LOG.verifier_keys[0],
                               {anchored_size: tuple(merkle.consistency_proof(tree, anchored_size))})


def anchor_of(tree: list[bytes]) -> note.Checkpoint:
    return note.Checkpoint(ORIGIN, len(tree), merkle.root_from_leaf_hashes(tree))


def test_a_bundle_anchor_verifies_against_a_head_enough_witnesses_cosigned(witness_key: Ed25519PrivateKey) -> None:
    other = Ed25519PrivateKey.generate()
    cosigners = [Cosigner("w1", witness_key.public_key()), Cosigner("w2", other.public_key())]
    tree = leaves(30)
    witnessed = witnessed_head(tree, 11, [("w1", witness_key), ("w2", other)])
    checked = verify_witnessed(anchor_of(tree[:11]), witnessed, cosigners, 2, LOG.verifier_keys[0])
    assert checked.head.tree_size == 30 and {c.witness for c in checked.cosignatures} == {"w1", "w2"}
    # The document round-trips through JSON as the verify kit would carry it.
    assert from_document(json.loads(json.dumps(witnessed.to_document()))) == witnessed
    with pytest.raises(WitnessedError, match="1 valid witness cosignature"):
        verify_witnessed(anchor_of(tree[:11]), witnessed_head(tree, 11, [("w1", witness_key)]), cosigners, 2)
    with pytest.raises(WitnessedError, match="different log key"):
        verify_witnessed(anchor_of(tree[:11]), witnessed, cosigners, 1,
                         note.verifier_key(ORIGIN, Ed25519PrivateKey.generate().public_key()))


def test_an_anchor_the_witnessed_head_does_not_extend_is_refused(witness_key: Ed25519PrivateKey) -> None:
    cosigners = [Cosigner("w1", witness_key.public_key())]
    tree = leaves(30)
    forked = leaves(10) + leaves(1, "fork")  # what the bundle was shown: another entry 11
    witnessed = witnessed_head(tree, 11, [("w1", witness_key)])
    with pytest.raises(WitnessedError, match="not a prefix"):
        verify_witnessed(anchor_of(forked), witnessed, cosigners, 1)
    with pytest.raises(WitnessedError, match="no consistency proof from size 12"):
        verify_witnessed(anchor_of(tree[:12]), witnessed, cosigners, 1)
    with pytest.raises(WitnessedError, match="older than the bundle"):
        verify_witnessed(anchor_of(leaves(31)), witnessed, cosigners, 1)


def test_witness_key_writes_a_private_key_once_and_prints_its_verifier_key(tmp_path: Path) -> None:
    from click.testing import CliRunner
    from ig_evidence.cli import main

    def run(*args: str) -> Any:
        return CliRunner().invoke(main, list(args), catch_exceptions=False)

    first = run("witness", "key", "--name", "witness.test/w9", "--out", str(tmp_path / "w.key"))
    assert first.exit_code == 0, first.output
    assert (tmp_path / "w.key").stat().st_mode & 0o777 == 0o600
    cosigner = parse_cosigner_key(first.output.strip())
    assert cosigner.name == "witness.test/w9"
    again = run("witness", "key", "--name", "witness.test/w9", "--out", str(tmp_path / "w.key"))
    assert again.output == first.output  # the same key, read back


# -- settings -----------------------------------------------------------------------------------------------------

def test_bad_witness_settings_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ig_common.settings import describe_errors
    from ig_evidence.settings import Settings
    from ig_evidence.witness.settings import WitnessSettings
    from pydantic import ValidationError

    (tmp_path / "table.yaml").write_text("identities: [witness]\n")
    monkeypatch.setenv("IG_AUTHZ_TABLE", str(tmp_path / "table.yaml"))
    monkeypatch.setenv("IG_WITNESS_LOGS", json.dumps([{"origin": ORIGIN, "verifier_keys": ["nope"]}]))
    with pytest.raises(ValidationError) as caught:
        WitnessSettings()
    assert any(line.startswith("invalid setting IG_WITNESS_LOGS:") and "not name+hash+base64" in line
               for line in describe_errors(WitnessSettings, caught.value))
    monkeypatch.setenv("IG_WITNESS_LOGS", json.dumps([{"origin": ORIGIN, "verifier_keys": list(LOG.verifier_keys)}]))
    assert WitnessSettings().logs() == (LOG,)

    env = {"IG_DATABASE_URL": "postgresql://x/y", "IG_KAFKA_BOOTSTRAP": "k:1",
           "IG_TENANT_RESIDENCY_FILE": str(Path(__file__).resolve().parents[3] / "policies" / "rego" / "ig" / "config"
                                           / "data.json")}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    log_key_as_witness_key = LOG.verifier_keys[0]  # a log's (0x01) key where a witness's (0x04) belongs
    monkeypatch.setenv("IG_WITNESSES", json.dumps([{"url": "https://w:1", "verifier_key": log_key_as_witness_key}]))
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert any(line.startswith("invalid setting IG_WITNESSES") and "type 0x04" in line
               for line in describe_errors(Settings, caught.value))
    monkeypatch.setenv("IG_WITNESSES", json.dumps([{"url": "http://w:1", "verifier_key": "x"}]))
    with pytest.raises(ValidationError):
        Settings()
