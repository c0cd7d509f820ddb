"""The witness's memory: per log, the size and root it last cosigned, in SQLite (WAL, synchronous=FULL).

tlog-witness requires the check of ``old`` against the stored size and the update to be atomic, or two racing
requests could roll a log back. The update is a compare-and-swap: it changes the row only if it still holds the
head the decision was made on, inside one ``BEGIN IMMEDIATE`` transaction; a request that lost the race is answered
409 with the size that won. With synchronous=FULL a commit is on disk before the cosignature is returned, so a
restarted (or crashed) witness never cosigns below what it has already cosigned.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from ig_evidence.domain.witness import TreeHead

_SCHEMA = """CREATE TABLE IF NOT EXISTS witnessed_logs (
    origin TEXT PRIMARY KEY,
    tree_size INTEGER NOT NULL CHECK (tree_size >= 0),
    root_hash BLOB NOT NULL CHECK (length(root_hash) = 32),
    checkpoint TEXT NOT NULL,          -- the checkpoint as the log signed it, plus this witness's cosignature
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
)"""


class WitnessState:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # One connection, used under a lock: requests are short, and SQLite serialises writers anyway.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(_SCHEMA)

    def latest(self, origin: str) -> TreeHead | None:
        with self._lock:
            row = self._db.execute("SELECT tree_size, root_hash FROM witnessed_logs WHERE origin = ?",
                                   (origin,)).fetchone()
        return TreeHead(int(row[0]), bytes(row[1])) if row is not None else None

    def latest_checkpoint(self, origin: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT checkpoint FROM witnessed_logs WHERE origin = ?", (origin,)).fetchone()
        return str(row[0]) if row is not None else None

    def advance(self, origin: str, expected: TreeHead | None, new: TreeHead, checkpoint: str) -> TreeHead | None:
        """Store ``new`` if the log's head is still ``expected``; returns None on success, else the head that is
        stored now (another request got there first)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute("SELECT tree_size, root_hash FROM witnessed_logs WHERE origin = ?",
                                       (origin,)).fetchone()
                current = TreeHead(int(row[0]), bytes(row[1])) if row is not None else None
                if current != expected:
                    self._db.execute("ROLLBACK")
                    return current or TreeHead(0, b"")
                self._db.execute(
                    """INSERT INTO witnessed_logs (origin, tree_size, root_hash, checkpoint) VALUES (?, ?, ?, ?)
                       ON CONFLICT (origin) DO UPDATE SET tree_size = excluded.tree_size,
                           root_hash = excluded.root_hash, checkpoint = excluded.checkpoint,
                           updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')""",
                    (origin, new.size, new.root, checkpoint))
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        return None

    def close(self) -> None:
        with self._lock:
            self._db.close()
