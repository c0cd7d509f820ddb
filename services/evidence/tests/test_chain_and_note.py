"""Hash chain of ledger entries and C2SP signed checkpoints."""

from __future__ import annotations

import base64
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from ig_evidence.domain import chain, note

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def build_chain(n: int) -> list[chain.StoredEntry]:
    entries, prev = [], chain.GENESIS_HASH
    for i in range(n):
        payload = f"payload {i}".encode()
        fields, digest = chain.next_entry(i, prev, T0 + timedelta(seconds=i), "test.kind", f"subject-{i}", payload)
        entries.append(chain.StoredEntry(fields, digest, payload))
        prev = digest
    return entries


def test_an_intact_chain_verifies() -> None:
    report = chain.verify_chain(build_chain(20))
    assert report.ok and report.entries_checked == 20 and report.first_bad_seq == 0


def _edit_subject(e: chain.StoredEntry) -> chain.StoredEntry:
    return replace(e, fields=replace(e.fields, subject="edited"))


def _edit_payload(e: chain.StoredEntry) -> chain.StoredEntry:
    return replace(e, payload=b"edited")


def _rehash_edit(e: chain.StoredEntry) -> chain.StoredEntry:
    # An editor who also recomputes the entry hash still breaks the link of the NEXT entry.
    fields = replace(e.fields, subject="edited")
    return chain.StoredEntry(fields, chain.entry_hash(fields), e.payload)


@pytest.mark.parametrize(("edit", "target", "first_bad"), [
    (_edit_subject, 7, 7), (_edit_payload, 3, 3), (_rehash_edit, 5, 6), (_edit_subject, 1, 1),
])
def test_an_edited_entry_names_the_first_bad_seq(edit: object, target: int, first_bad: int) -> None:
    entries = build_chain(10)
    entries[target - 1] = edit(entries[target - 1])  # type: ignore[operator]
    report = chain.verify_chain(entries)
    assert not report.ok and report.first_bad_seq == first_bad
    assert f"seq {first_bad}" in report.message


def test_a_removed_entry_is_a_gap() -> None:
    entries = build_chain(6)
    del entries[2]
    report = chain.verify_chain(entries)
    assert report.first_bad_seq == 3 and "gap" in report.message


@pytest.mark.parametrize(("kind", "subject"), [("", "s"), ("k" * 129, "s"), ("k\n", "s"), ("k", "x" * 513)])
def test_bad_append_fields_are_named(kind: str, subject: str) -> None:
    with pytest.raises(ValueError, match=r"kind|subject"):
        chain.validate_append(kind, subject)


def test_naive_timestamps_are_refused() -> None:
    with pytest.raises(ValueError):
        chain.format_ts(datetime(2026, 1, 1))


def test_checkpoint_signs_deterministically_and_verifies() -> None:
    key = Ed25519PrivateKey.generate()
    checkpoint = note.Checkpoint("example.org/log", 42, bytes(range(32)))
    signed = note.sign_checkpoint(checkpoint, "example.org/log", key)
    assert signed == note.sign_checkpoint(checkpoint, "example.org/log", key)
    body, signature_line = signed.split("\n\n")
    assert body.split("\n") == ["example.org/log", "42", base64.b64encode(bytes(range(32))).decode()]
    assert signature_line.startswith("\u2014 example.org/log ")
    verifier = note.verifier_key("example.org/log", key.public_key())
    assert note.open_checkpoint(signed, verifier) == checkpoint


@pytest.mark.parametrize("tamper", [
    lambda s: s.replace("\n42\n", "\n43\n"),
    lambda s: s.replace("example.org/log\n", "example.org/other\n", 1),
    lambda s: s.split("\n\n")[0] + "\n",
])
def test_a_tampered_checkpoint_does_not_open(tamper: object) -> None:
    key = Ed25519PrivateKey.generate()
    signed = note.sign_checkpoint(note.Checkpoint("example.org/log", 42, bytes(32)), "example.org/log", key)
    with pytest.raises(note.NoteError):
        note.open_checkpoint(tamper(signed), note.verifier_key("example.org/log", key.public_key()))  # type: ignore[operator]


def test_another_key_does_not_open_the_checkpoint() -> None:
    signed = note.sign_checkpoint(note.Checkpoint("log", 1, bytes(32)), "log", Ed25519PrivateKey.generate())
    with pytest.raises(note.NoteError):
        note.open_checkpoint(signed, note.verifier_key("log", Ed25519PrivateKey.generate().public_key()))


def test_verifier_keys_round_trip_even_when_their_base64_contains_plus_signs() -> None:
    # base64 uses '+', the same character that separates name, hash and key; 64 keys make a '+' near-certain.
    for _ in range(64):
        public_key = Ed25519PrivateKey.generate().public_key()
        name, parsed = note.parse_verifier_key(note.verifier_key("log.example/a", public_key))
        assert name == "log.example/a" and parsed == public_key
