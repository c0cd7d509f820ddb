"""The tenant-wide access log: ledger entries as searchable rows, search filters and opaque page cursors.

A row is projected from one ledger entry of the access kind and keeps what an outside party needs to prove it
against the ledger (seq, ledger time, subject, previous and own entry hash, the payload bytes). Whatever does not
parse, or names a tenant its ledger subject does not, is skipped with a reason instead of becoming a row.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime

from ig_portal.domain.access import LEDGER_KIND, AccessEntry, Action, UnreadableEntry, ledger_subject

OUTCOMES = ("ok", "refused")
MAX_PAGE = 200


@dataclass(frozen=True)
class LedgerRecord:
    """An entry as the ledger serves it (ig.ledger.v1.Entry, without the proto types)."""

    seq: int
    ts: datetime
    kind: str
    subject: str
    payload: bytes
    prev_hash: str
    entry_hash: str


@dataclass(frozen=True)
class ProjectedAccess:
    record: LedgerRecord
    entry: AccessEntry
    at: datetime


@dataclass(frozen=True)
class Skipped:
    seq: int
    tenant: str  # the tenant the subject names ('' when it names none): whose log shows the count
    reason: str


def parse_at(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("at: no time zone")
    return parsed


def project(record: LedgerRecord, recorded_for: str | None = None) -> ProjectedAccess | Skipped:
    """The access log's row of ``record``, or why it has none. ``recorded_for``: the tenant the ledger recorded the
    entry for (the tenant the feed read it under), which the payload must name too."""
    subject_tenant = record.subject.split("/")[1] if record.subject.startswith("portal/") else ""
    if record.kind != LEDGER_KIND:
        return Skipped(record.seq, subject_tenant, f"kind {record.kind!r}")
    try:
        entry = AccessEntry.from_payload(record.payload)
        at = parse_at(entry.at)
    except (UnreadableEntry, ValueError) as error:
        return Skipped(record.seq, subject_tenant, f"unreadable: {error}"[:200])
    if not entry.tenant or record.subject != ledger_subject(entry.tenant, entry.release):
        # Foreign: the payload claims a tenant (or release) its subject does not; neither log may show it.
        return Skipped(record.seq, subject_tenant, "foreign: payload and subject disagree")
    if recorded_for is not None and entry.tenant != recorded_for:
        return Skipped(record.seq, subject_tenant, f"foreign: appended for tenant {recorded_for!r}")
    return ProjectedAccess(record, entry, at)


@dataclass(frozen=True)
class LogFilter:
    """What a search narrows to; empty strings and None mean "any". The tenant is never part of it: it comes from
    the caller's verified identity."""

    user: str = ""
    action: str = ""
    release: str = ""
    outcome: str = ""
    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        if self.action and self.action not in {a.value for a in Action}:
            raise ValueError(f"action: one of {', '.join(a.value for a in Action)}")
        if self.outcome and self.outcome not in OUTCOMES:
            raise ValueError(f"outcome: one of {', '.join(OUTCOMES)}")
        if self.since and self.until and self.until <= self.since:
            raise ValueError("until: must be after from")

    def digest(self) -> str:
        """Binds a cursor to the search it continues: the same cursor with other filters is refused."""
        material = json.dumps([self.user, self.action, self.release, self.outcome,
                               self.since.isoformat() if self.since else "",
                               self.until.isoformat() if self.until else ""])
        return hashlib.sha256(material.encode()).hexdigest()[:32]


class CursorInvalid(ValueError):
    """A cursor that this portal did not issue for this tenant and these filters (or altered on the way)."""


@dataclass(frozen=True)
class Cursors:
    """Opaque, tamper-evident page cursors: base64url of (tenant, filter digest, access time and seq of the last row
    shown), with an HMAC-SHA256 under the portal's secret. A cursor from another tenant, another search or another
    key is refused."""

    secret: bytes

    def _mac(self, body: bytes) -> str:
        return hmac.new(self.secret, b"ig-portal access-log cursor\n" + body, hashlib.sha256).hexdigest()[:32]

    def issue(self, tenant: str, log_filter: LogFilter, below: tuple[datetime, int]) -> str:
        at, seq = below
        body = json.dumps([tenant, log_filter.digest(), at.isoformat(), seq], separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(body).decode().rstrip("=") + "." + self._mac(body)

    def open(self, cursor: str, tenant: str, log_filter: LogFilter) -> tuple[datetime, int]:
        """The (at, seq) the next page starts below; CursorInvalid otherwise."""
        encoded, _, mac = cursor.partition(".")
        try:
            body = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except ValueError as error:
            raise CursorInvalid("cursor: not one this portal issued") from error
        if not hmac.compare_digest(mac.encode(), self._mac(body).encode()):
            raise CursorInvalid("cursor: not one this portal issued")
        issued_tenant, digest, at, seq = json.loads(body)
        if issued_tenant != tenant or digest != log_filter.digest():
            raise CursorInvalid("cursor: issued for another search")
        if type(seq) is not int or seq < 1 or not isinstance(at, str):
            raise CursorInvalid("cursor: not one this portal issued")
        return parse_at(at), seq
