"""The hash chain of ledger entries: each entry's hash covers its fields and the previous entry's hash.

``entry_hash = SHA-256(RFC 8785 canonical JSON of {seq, ts, kind, subject, payload_sha256, prev_hash})`` in hex.
Sequence numbers start at 1, so ``first_bad_seq == 0`` can mean "nothing wrong". The Merkle leaf of an entry is
its raw 32-byte entry hash, so an inclusion proof proves the whole chained entry.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import rfc8785

GENESIS_HASH = "0" * 64
MAX_KIND_LENGTH = 128
MAX_SUBJECT_LENGTH = 512


@dataclass(frozen=True)
class EntryFields:
    seq: int
    ts: datetime
    kind: str
    subject: str
    payload_sha256: str
    prev_hash: str


@dataclass(frozen=True)
class StoredEntry:
    fields: EntryFields
    entry_hash: str
    payload: bytes


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    entries_checked: int
    first_bad_seq: int
    message: str


def format_ts(ts: datetime) -> str:
    """UTC with microseconds: the precision PostgreSQL keeps, so a stored entry re-hashes identically."""
    if ts.tzinfo is None:
        raise ValueError("ledger timestamps must be timezone-aware")
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def entry_hash(fields: EntryFields) -> str:
    document: dict[str, int | str] = {
        "seq": fields.seq,
        "ts": format_ts(fields.ts),
        "kind": fields.kind,
        "subject": fields.subject,
        "payload_sha256": fields.payload_sha256,
        "prev_hash": fields.prev_hash,
    }
    if _json_is_canonical_for(fields):
        # The appender's hot path: for these values the standard encoder's output is RFC 8785's, byte for byte
        # (tests/test_chain_canonical.py checks it against rfc8785 over generated entries), at a fifth of the cost.
        return sha256_hex(json.dumps(document, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode())
    return sha256_hex(rfc8785.dumps(document))


def _json_is_canonical_for(fields: EntryFields) -> bool:
    """True when Python's JSON encoder (sorted keys, no spaces, no ASCII escaping) writes what RFC 8785 writes.

    The keys are fixed ASCII, so Python's code-point order is RFC 8785's UTF-16 order. A printable string has no
    control characters and no lone surrogates, so both escape exactly ``"`` and ``\\`` the same way; ``seq`` is an
    integer within the range JSON numbers carry exactly. Anything else takes the library.
    """
    return (0 <= fields.seq < 2**53 and fields.kind.isprintable() and fields.subject.isprintable()
            and fields.payload_sha256.isprintable() and fields.prev_hash.isprintable())


def validate_append(kind: str, subject: str) -> None:
    """Raises ValueError naming the field when an append request is malformed."""
    if not kind or len(kind) > MAX_KIND_LENGTH or not kind.isprintable():
        raise ValueError(f"kind: must be 1..{MAX_KIND_LENGTH} printable characters")
    if len(subject) > MAX_SUBJECT_LENGTH or not subject.isprintable():
        raise ValueError(f"subject: must be at most {MAX_SUBJECT_LENGTH} printable characters")


def next_entry(prev_seq: int, prev_hash: str, ts: datetime, kind: str, subject: str,
               payload: bytes) -> tuple[EntryFields, str]:
    fields = EntryFields(seq=prev_seq + 1, ts=ts, kind=kind, subject=subject,
                         payload_sha256=sha256_hex(payload), prev_hash=prev_hash)
    return fields, entry_hash(fields)


class ChainWalker:
    """Checks entries fed in seq order (in pages, from a database cursor); remembers the first problem."""

    def __init__(self) -> None:
        self.expected_seq = 1
        self.prev_hash = GENESIS_HASH
        self.checked = 0
        self.problem: ChainReport | None = None

    def feed(self, entry: StoredEntry) -> bool:
        """False once a problem was found (stop feeding)."""
        if self.problem is not None:
            return False
        f = entry.fields
        problem = None
        if f.seq != self.expected_seq:
            problem = f"expected seq {self.expected_seq}, found {f.seq} (gap or reorder)"
        elif sha256_hex(entry.payload) != f.payload_sha256:
            problem = "payload does not match payload_sha256"
        elif f.prev_hash != self.prev_hash:
            problem = "prev_hash does not link to the previous entry"
        elif entry_hash(f) != entry.entry_hash:
            problem = "entry_hash does not match the entry's fields"
        if problem is not None:
            bad = self.expected_seq
            self.problem = ChainReport(False, self.checked, bad, f"seq {bad}: {problem}")
            return False
        self.checked += 1
        self.expected_seq, self.prev_hash = f.seq + 1, entry.entry_hash
        return True

    def report(self) -> ChainReport:
        return self.problem or ChainReport(True, self.checked, 0, f"{self.checked} entries verified")


def verify_chain(entries: Iterable[StoredEntry]) -> ChainReport:
    """Walk the chain in seq order; the first entry whose seq, payload, link or hash is wrong is reported."""
    walker = ChainWalker()
    for entry in entries:
        if not walker.feed(entry):
            break
    return walker.report()
