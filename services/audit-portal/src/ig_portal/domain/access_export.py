"""Access-log exports (CSV and JSON) that an outside party can check against the ledger: ``ig-evidence
verify-export``.

Each row carries its ledger entry as the ledger chained it (seq, ledger time, kind, subject, payload, previous and
own entry hash) and its RFC 9162 inclusion proof in the signed checkpoint the export starts with. The readable
columns (user, action, object, ...) are taken from the payload and neutralised against spreadsheet formulas
(``ig_common.spreadsheet``); the verifier re-derives them from the proven payload, so a neutralised cell is told
apart from an altered one. The proof columns (hex, base64 of a JSON object, a timestamp, ``portal/...``) can never
start like a formula.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

from ig_common.spreadsheet import neutralise

from ig_portal.domain.access import AccessEntry
from ig_portal.domain.access_log import LedgerRecord

EXPORT_VERSION = 1
CSV_HEADER = ("record", "seq", "at", "user", "email", "tenant", "action", "status", "outcome", "object", "release",
              "download_id", "request_sha256", "ledger_ts", "kind", "subject", "prev_hash", "entry_hash",
              "payload_base64", "inclusion", "checkpoint_note_base64", "checkpoint_verifier_key")


def ledger_time(ts: datetime) -> str:
    """The ledger's own rendering of an entry's time (what its entry hash covers), microseconds, UTC."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def readable(entry: AccessEntry) -> dict[str, Any]:
    """The columns people read, neutralised; status stays a number."""
    text = {"at": entry.at, "user": entry.user, "email": entry.email, "tenant": entry.tenant,
            "action": entry.action.value, "outcome": entry.outcome, "object": entry.object, "release": entry.release,
            "download_id": entry.download_id, "request_sha256": entry.request_sha256}
    return {**{name: neutralise(value) for name, value in text.items()}, "status": entry.status}


def json_entry(record: LedgerRecord, entry: AccessEntry, inclusion: list[str]) -> dict[str, Any]:
    return {**readable(entry),
            "ledger": {"seq": record.seq, "ts": ledger_time(record.ts), "kind": record.kind,
                       "subject": record.subject, "prevHash": record.prev_hash, "entryHash": record.entry_hash,
                       "payload": record.payload.decode(), "inclusion": inclusion}}


def json_head(tenant: str, filters: dict[str, str], exported_by: str, checkpoint_note: str, verifier_key: str,
              tree_size: int) -> dict[str, Any]:
    return {"exportVersion": EXPORT_VERSION, "tenant": tenant, "filters": filters,
            "exportedBy": neutralise(exported_by),
            "checkpoint": {"treeSize": tree_size, "note": checkpoint_note, "verifierKey": verifier_key}}


def csv_entry(record: LedgerRecord, entry: AccessEntry, inclusion: list[str]) -> list[str]:
    cells = readable(entry)
    return ["entry", str(record.seq), cells["at"], cells["user"], cells["email"], cells["tenant"], cells["action"],
            str(entry.status), cells["outcome"], cells["object"], cells["release"], cells["download_id"],
            cells["request_sha256"], ledger_time(record.ts), record.kind, record.subject, record.prev_hash,
            record.entry_hash, base64.b64encode(record.payload).decode(), " ".join(inclusion), "", ""]


def csv_checkpoint(tenant: str, checkpoint_note: str, verifier_key: str, tree_size: int) -> list[str]:
    """The first row: the signed checkpoint every entry row's proof leads to (its verifier key for convenience:
    pin the ledger's key yourself)."""
    row = [""] * len(CSV_HEADER)
    row[0], row[1], row[5] = "checkpoint", str(tree_size), neutralise(tenant)
    row[-2], row[-1] = base64.b64encode(checkpoint_note.encode()).decode(), neutralise(verifier_key)
    return row


def csv_end(complete: bool, next_cursor: str) -> list[str]:
    """The last row: whether every matching row is in the export, else the cursor to continue after it."""
    row = [""] * len(CSV_HEADER)
    row[0], row[9] = "end", "complete" if complete else f"truncated; continue with cursor {next_cursor}"
    return row


def json_dumps(document: Any) -> str:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)
