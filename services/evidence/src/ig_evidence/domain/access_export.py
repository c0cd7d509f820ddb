"""Checking an Audit Portal access-log export (CSV or JSON) against the ledger, offline.

For every row: its payload hashes to the payload hash, the entry's fields (seq, ledger time, kind, subject, that
hash, the previous entry's hash) hash to its entry hash, and the entry's inclusion proof leads from that leaf to the
root of the checkpoint the export starts with, whose signature verifies with the ledger's pinned key. The columns
people read must be what the proven payload says (neutralised against spreadsheet formulas exactly as the portal
does), the subject must be the portal's for that tenant and release, and every row must be of the export's tenant.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ig_common.spreadsheet import neutralise

from ig_evidence.domain import merkle, note
from ig_evidence.domain.chain import EntryFields, entry_hash, sha256_hex

ACCESS_KIND = "ig.audit.access"
READABLE = ("at", "user", "email", "tenant", "action", "object", "release", "download_id", "request_sha256")


class ExportError(ValueError):
    """The export is malformed (the message names where)."""


@dataclass(frozen=True)
class ExportRow:
    fields: EntryFields
    entry_hash: str
    payload: bytes
    inclusion: tuple[bytes, ...]
    shown: Mapping[str, str]  # the readable columns as the export shows them


@dataclass(frozen=True)
class Export:
    tenant: str
    tree_size: int
    note: str
    verifier_key: str
    rows: list[ExportRow]
    complete: bool


@dataclass
class ExportReport:
    tenant: str = ""
    tree_size: int = 0
    rows: int = 0
    complete: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _fields(seq: Any, ts: Any, kind: Any, subject: Any, payload: bytes, prev_hash: Any) -> EntryFields:
    return EntryFields(seq=int(seq), ts=datetime.fromisoformat(str(ts).replace("Z", "+00:00")), kind=str(kind),
                       subject=str(subject), payload_sha256=sha256_hex(payload), prev_hash=str(prev_hash))


def _hashes(values: Any) -> tuple[bytes, ...]:
    return tuple(bytes.fromhex(str(v)) for v in values)


def parse_json(document: Any) -> Export:
    rows: list[ExportRow] = []
    try:
        head = document["checkpoint"]
        for item in document["entries"]:
            ledger = item["ledger"]
            payload = str(ledger["payload"]).encode()
            rows.append(ExportRow(_fields(ledger["seq"], ledger["ts"], ledger["kind"], ledger["subject"], payload,
                                          ledger["prevHash"]), str(ledger["entryHash"]), payload,
                                  _hashes(ledger["inclusion"]),
                                  {k: str(item[k]) for k in (*READABLE, "status")}))
        return Export(str(document["tenant"]), int(head["treeSize"]), str(head["note"]), str(head["verifierKey"]),
                      rows, document.get("complete") is True)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ExportError(f"JSON export: malformed at entry {len(rows)} ({error!r})") from error


def _unneutralised(cell: str) -> str:
    """Only for the proof columns, which a correct export never neutralises: undo what a spreadsheet round trip or
    the portal's rule would have added, so the proof decides."""
    return cell[1:] if cell.startswith("'") and cell[1:].startswith(("=", "+", "-", "@", "\t", "\r")) else cell


def parse_csv(text: str) -> Export:
    reader = csv.DictReader(io.StringIO(text))
    tenant, tree_size, note_text, verifier, complete = "", 0, "", "", False
    rows: list[ExportRow] = []
    try:
        for line, row in enumerate(reader, start=2):
            record = row["record"]
            if record == "checkpoint":
                tenant, tree_size = _unneutralised(row["tenant"]), int(row["seq"])
                note_text = base64.b64decode(row["checkpoint_note_base64"], validate=True).decode()
                verifier = _unneutralised(row["checkpoint_verifier_key"])
            elif record == "entry":
                payload = base64.b64decode(row["payload_base64"], validate=True)
                rows.append(ExportRow(_fields(row["seq"], row["ledger_ts"], row["kind"], row["subject"], payload,
                                              row["prev_hash"]), row["entry_hash"], payload,
                                      _hashes(row["inclusion"].split()),
                                      {k: row[k] for k in (*READABLE, "status")}))
            elif record == "end":
                complete = row["object"] == "complete"
            else:
                raise ExportError(f"CSV line {line}: record {record!r} is not checkpoint, entry or end")
    except (KeyError, TypeError, ValueError, AttributeError, csv.Error) as error:
        raise ExportError(f"CSV export: malformed ({error!r})") from error
    if not note_text:
        raise ExportError("CSV export: no checkpoint row")
    return Export(tenant, tree_size, note_text, verifier, rows, complete)


def parse(raw: bytes) -> Export:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ExportError(f"export: not UTF-8 text ({error})") from error
    if text.lstrip().startswith("{"):
        try:
            return parse_json(json.loads(text))
        except ValueError as error:
            if isinstance(error, ExportError):
                raise
            raise ExportError(f"JSON export: not JSON ({error})") from error
    return parse_csv(text)


def _problems(row: ExportRow, export: Export, head: note.Checkpoint) -> Iterator[str]:
    f = row.fields
    where = f"seq {f.seq}"
    if f.kind != ACCESS_KIND:
        yield f"{where}: a {f.kind!r} entry, not an access"
        return
    if entry_hash(f) != row.entry_hash:
        yield f"{where}: entry hash does not match its fields and payload"
        return
    try:
        merkle.verify_inclusion(f.seq - 1, head.tree_size, merkle.leaf_hash(bytes.fromhex(row.entry_hash)),
                                row.inclusion, head.root_hash)
    except (merkle.ProofError, ValueError) as error:
        yield f"{where}: not in the checkpoint ({error})"
        return
    try:
        payload = json.loads(row.payload)
        assert isinstance(payload, dict)
    except (ValueError, AssertionError):
        yield f"{where}: payload is not a JSON object"
        return
    if payload.get("tenant") != export.tenant:
        yield f"{where}: an entry of tenant {payload.get('tenant')!r} in an export of {export.tenant!r}"
    release = payload.get("release") or ""
    wanted_subject = f"portal/{payload.get('tenant')}/{release}" if release else f"portal/{payload.get('tenant')}"
    if f.subject != wanted_subject:
        yield f"{where}: subject {f.subject!r} is not the portal's for the payload"
    if row.shown.get("status") != str(payload.get("status", 200)):
        yield f"{where}: status shows {row.shown.get('status')!r}, the ledger says {payload.get('status', 200)!r}"
    for name in READABLE:
        if row.shown.get(name) != neutralise(str(payload.get(name, ""))):
            yield f"{where}: {name} shows {row.shown.get(name)!r}, the ledger says {payload.get(name)!r}"


def verify_export(raw: bytes, pinned_ledger_key: str | None) -> ExportReport:
    report = ExportReport()
    try:
        export = parse(raw)
    except ExportError as error:
        report.problems.append(str(error))
        return report
    report.tenant, report.tree_size, report.rows, report.complete = (export.tenant, export.tree_size,
                                                                     len(export.rows), export.complete)
    try:
        head = note.open_checkpoint(export.note, pinned_ledger_key or export.verifier_key)
    except note.NoteError as error:
        report.problems.append(f"checkpoint: {error}")
        return report
    if head.tree_size != export.tree_size:
        report.problems.append(f"checkpoint: signed for size {head.tree_size}, the export says {export.tree_size}")
    for row in export.rows:
        report.problems.extend(_problems(row, export, head))
    return report
