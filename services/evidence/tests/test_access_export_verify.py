"""ig-evidence verify-export on exports built here with a real signed checkpoint and Merkle tree: a good export
verifies; altered cells, proofs, tenants and malformed files are problems named in the report, never a traceback."""

from __future__ import annotations

import base64
import csv
import io
import json
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from ig_common.spreadsheet import neutralise
from ig_evidence.domain import merkle, note
from ig_evidence.domain.access_export import verify_export
from ig_evidence.domain.chain import GENESIS_HASH, format_ts, next_entry

KEY = Ed25519PrivateKey.generate()
TS = datetime(2026, 12, 6, tzinfo=UTC)


def payload(n: int, tenant: str = "alpha", user: str = "sub") -> bytes:
    body = {"user": user, "tenant": tenant, "action": "read", "object": "releases", "release": "",
            "download_id": "", "request_sha256": "0" * 64, "at": "2026-12-06T00:00:00.000Z",
            "email": f"u{n}@alpha.example", "status": 200}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def export(users: tuple[str, ...] = ("sub", "=1+1", "sub")) -> tuple[dict[str, object], str]:
    entries, prev = [], GENESIS_HASH
    for n, user in enumerate(users):
        body = payload(n, user=user)
        fields, digest = next_entry(n, prev, TS, "ig.audit.access", "portal/alpha", body)
        entries.append((fields, digest, body))
        prev = digest
    leaves = [merkle.leaf_hash(bytes.fromhex(d)) for _, d, _ in entries]
    root = merkle.root_from_leaf_hashes(leaves)
    signed = note.sign_checkpoint(note.Checkpoint("test/ledger", len(leaves), root), "test/ledger", KEY)
    verifier = note.verifier_key("test/ledger", KEY.public_key())
    rows = []
    for index, (fields, digest, body) in enumerate(entries):
        shown = json.loads(body)
        rows.append({**{k: neutralise(str(v)) for k, v in shown.items() if k != "status"}, "status": 200,
                     "outcome": "ok",
                     "ledger": {"seq": fields.seq, "ts": format_ts(fields.ts), "kind": fields.kind,
                                "subject": fields.subject, "prevHash": fields.prev_hash, "entryHash": digest,
                                "payload": body.decode(),
                                "inclusion": [h.hex() for h in merkle.inclusion_proof(leaves, index)]}})
    return {"exportVersion": 1, "tenant": "alpha", "filters": {}, "exportedBy": "admin",
            "checkpoint": {"treeSize": len(leaves), "note": signed, "verifierKey": verifier},
            "entries": rows, "complete": True, "next": None}, verifier


def test_a_good_export_verifies_with_the_pinned_key() -> None:
    document, key = export()
    report = verify_export(json.dumps(document).encode(), key)
    assert report.ok, report.problems
    assert report.rows == 3 and report.tenant == "alpha" and report.complete


def test_a_cell_shown_without_neutralising_is_a_problem() -> None:
    document, key = export()
    document["entries"][1]["user"] = "=1+1"  # type: ignore[index]
    report = verify_export(json.dumps(document).encode(), key)
    assert not report.ok and "user shows '=1+1'" in report.problems[0]


def test_a_wrong_proof_or_key_or_tenant_is_a_problem() -> None:
    document, key = export()
    document["entries"][0]["ledger"]["inclusion"][0] = "00" * 32  # type: ignore[index]
    assert "not in the checkpoint" in verify_export(json.dumps(document).encode(), key).problems[0]
    document, _ = export()
    other = note.verifier_key("test/ledger", Ed25519PrivateKey.generate().public_key())
    assert "checkpoint" in verify_export(json.dumps(document).encode(), other).problems[0]
    document, key = export()
    document["tenant"] = "beta"
    assert any("of tenant 'alpha' in an export of 'beta'" in p
               for p in verify_export(json.dumps(document).encode(), key).problems)


def test_malformed_exports_are_reported_not_raised() -> None:
    for raw in (b"", b"{", b'{"entries": 3}', b"record,seq\nentry,x\n", b"\xff\xfe"):
        report = verify_export(raw, None)
        assert not report.ok and report.problems


def test_a_csv_export_verifies_too() -> None:
    document, key = export()
    head = document["checkpoint"]
    out = io.StringIO()
    columns = ["record", "seq", "at", "user", "email", "tenant", "action", "status", "outcome", "object", "release",
               "download_id", "request_sha256", "ledger_ts", "kind", "subject", "prev_hash", "entry_hash",
               "payload_base64", "inclusion", "checkpoint_note_base64", "checkpoint_verifier_key"]
    writer = csv.DictWriter(out, fieldnames=columns)
    writer.writeheader()
    writer.writerow({"record": "checkpoint", "seq": head["treeSize"], "tenant": "alpha",  # type: ignore[index]
                     "checkpoint_note_base64": base64.b64encode(head["note"].encode()).decode(),  # type: ignore[index]
                     "checkpoint_verifier_key": key})
    for row in document["entries"]:  # type: ignore[attr-defined]
        ledger = row["ledger"]
        writer.writerow({**{k: v for k, v in row.items() if k != "ledger"}, "record": "entry", "seq": ledger["seq"],
                         "ledger_ts": ledger["ts"], "kind": ledger["kind"], "subject": ledger["subject"],
                         "prev_hash": ledger["prevHash"], "entry_hash": ledger["entryHash"],
                         "payload_base64": base64.b64encode(ledger["payload"].encode()).decode(),
                         "inclusion": " ".join(ledger["inclusion"])})
    writer.writerow({"record": "end", "object": "complete"})
    report = verify_export(out.getvalue().encode(), key)
    assert report.ok and report.rows == 3, report.problems
