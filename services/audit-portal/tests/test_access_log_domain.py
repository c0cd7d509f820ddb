"""The access log's pure parts: projecting ledger entries (or skipping them), page cursors, formula neutralising."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ig_common.spreadsheet import neutralise
from ig_portal.domain.access import AccessEntry, Action, ledger_subject
from ig_portal.domain.access_log import (
    CursorInvalid,
    Cursors,
    LedgerRecord,
    LogFilter,
    ProjectedAccess,
    Skipped,
    project,
)

TS = datetime(2026, 12, 6, tzinfo=UTC)


def entry(**fields: object) -> AccessEntry:
    values: dict[str, object] = {"user": "sub", "tenant": "alpha", "action": Action.READ, "object": "releases",
                                 "release": "", "download_id": "", "request_sha256": "0" * 64,
                                 "at": "2026-12-06T00:00:00.000Z", "email": "a@alpha.example", **fields}
    return AccessEntry(**values)  # type: ignore[arg-type]


def record(payload: bytes, subject: str = "portal/alpha", kind: str = "ig.audit.access") -> LedgerRecord:
    return LedgerRecord(seq=7, ts=TS, kind=kind, subject=subject, payload=payload, prev_hash="0" * 64,
                        entry_hash="1" * 64)


def test_an_access_entry_becomes_a_row_with_its_status() -> None:
    projected = project(record(entry(status=404, release="v1", object="refused:/x").payload(), "portal/alpha/v1"))
    assert isinstance(projected, ProjectedAccess)
    assert projected.entry.status == 404 and projected.entry.outcome == "refused"
    assert projected.at == datetime(2026, 12, 6, tzinfo=UTC)


def test_an_entry_written_before_statuses_reads_as_served() -> None:
    body = json.loads(entry().payload())
    del body["status"]
    projected = project(record(json.dumps(body).encode()))
    assert isinstance(projected, ProjectedAccess) and projected.entry.status == 200


@pytest.mark.parametrize(("payload", "subject", "reason"), [
    (b"not json", "portal/alpha", "unreadable"),
    (b'{"action": "read"}', "portal/alpha", "unreadable"),
    (entry(status=99).payload(), "portal/alpha", "unreadable"),
    (entry(at="yesterday").payload(), "portal/alpha", "unreadable"),
    (entry(tenant="beta").payload(), "portal/alpha", "foreign"),          # beta's payload under alpha's subject
    (entry(release="v2").payload(), "portal/alpha/v1", "foreign"),
])
def test_what_is_not_an_access_of_the_subjects_tenant_is_skipped(payload: bytes, subject: str, reason: str) -> None:
    skipped = project(record(payload, subject))
    assert isinstance(skipped, Skipped) and skipped.reason.startswith(reason) and skipped.tenant == "alpha"


def test_an_entry_the_ledger_recorded_for_another_tenant_than_its_payload_names_is_skipped() -> None:
    """The feed reads each tenant's entries as the ledger recorded them (issue #21); a payload naming another tenant
    (consistent with its subject) still gets no row, in either tenant's log."""
    payload = entry().payload()
    assert isinstance(project(record(payload), recorded_for="alpha"), ProjectedAccess)
    skipped = project(record(payload), recorded_for="beta")
    assert isinstance(skipped, Skipped) and skipped.reason == "foreign: appended for tenant 'beta'"


def test_cursors_continue_only_the_search_and_tenant_they_were_issued_for() -> None:
    cursors, chosen = Cursors(b"k" * 32), LogFilter(action="download")
    issued = cursors.issue("alpha", chosen, (TS, 42))
    assert cursors.open(issued, "alpha", LogFilter(action="download")) == (TS, 42)
    with pytest.raises(CursorInvalid):
        cursors.open(issued, "beta", chosen)
    with pytest.raises(CursorInvalid):
        cursors.open(issued, "alpha", LogFilter(action="view"))
    with pytest.raises(CursorInvalid):
        Cursors(b"other" * 8).open(issued, "alpha", chosen)
    encoded, mac = issued.split(".")
    body = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    moved = base64.urlsafe_b64encode(json.dumps([*body[:3], 10 ** 9]).encode()).decode().rstrip("=")
    with pytest.raises(CursorInvalid):
        cursors.open(f"{moved}.{mac}", "alpha", chosen)


def test_filters_refuse_what_they_cannot_mean() -> None:
    with pytest.raises(ValueError, match="action"):
        LogFilter(action="delete")
    with pytest.raises(ValueError, match="outcome"):
        LogFilter(outcome="maybe")
    with pytest.raises(ValueError, match="until"):
        LogFilter(since=TS, until=TS)


@given(st.text())
def test_no_neutralised_cell_starts_like_a_formula_and_the_text_is_kept(cell: str) -> None:
    safe = neutralise(cell)
    assert not safe.startswith(("=", "+", "-", "@", "\t", "\r"))
    assert safe in (cell, "'" + cell)


@pytest.mark.parametrize("cell", ["=1+1", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1"])
def test_formula_cells_are_neutralised(cell: str) -> None:
    assert neutralise(cell) == "'" + cell


def test_plain_cells_are_untouched() -> None:
    assert neutralise("auditor@alpha.example") == "auditor@alpha.example"
    assert ledger_subject("alpha", "v1") == "portal/alpha/v1"
