"""A ledger row as the store reads it: the entry's columns and the StoredEntry made of them."""

from __future__ import annotations

import asyncpg

from ig_evidence.domain.chain import EntryFields, StoredEntry

# The entry's own columns; its tenant (migration 0011) sits beside them and is read only to filter on.
COLUMNS = "seq, ts, kind, subject, payload, payload_sha256, prev_hash, entry_hash"


def row_to_entry(row: asyncpg.Record) -> StoredEntry:
    fields = EntryFields(seq=row["seq"], ts=row["ts"], kind=row["kind"], subject=row["subject"],
                         payload_sha256=row["payload_sha256"], prev_hash=row["prev_hash"])
    return StoredEntry(fields=fields, entry_hash=row["entry_hash"], payload=bytes(row["payload"]))
