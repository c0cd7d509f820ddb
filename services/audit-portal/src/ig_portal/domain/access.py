"""Access entries: what the ledger records for every view, read, download and export."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from enum import StrEnum

LEDGER_KIND = "ig.audit.access"


class Action(StrEnum):
    VIEW = "view"          # an HTML page
    READ = "read"          # a JSON API read (catalog, artifact list, link issued)
    DOWNLOAD = "download"  # artifact bytes served through a signed link
    EXPORT = "export"      # an access-log export
    GRANT = "grant"        # an admin grants (or revokes) an auditor's access to a release
    ACCEPT = "accept"      # an auditor accepts a grant's NDA (object: nda:<grant>@<address>)


class UnreadableEntry(ValueError):
    """A ledger entry of the access kind that does not parse as an access entry."""


@dataclass(frozen=True)
class AccessEntry:
    user: str
    tenant: str
    action: Action
    object: str
    release: str
    download_id: str
    request_sha256: str
    at: str
    email: str = ""  # for people reading the log; `user` (the token's subject) is the identity
    # The HTTP status answered: 200 for an access served; 403/404/429 for a refused attempt (recorded too). Entries
    # written before refusals were recorded carry no status and read as 200.
    status: int = 200

    @property
    def outcome(self) -> str:
        return "refused" if self.status >= 400 else "ok"

    def payload(self) -> bytes:
        """Canonical JSON (sorted keys, no spaces): the bytes whose hash the ledger chains."""
        body = {**asdict(self), "action": self.action.value}
        return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def from_payload(cls, raw: bytes) -> AccessEntry:
        """The entry, or UnreadableEntry for anything that is not one (the ledger keeps whatever it took)."""
        try:
            body = json.loads(raw)
            entry = cls(**{**body, "action": Action(body["action"])})
        except (ValueError, TypeError, KeyError) as error:
            raise UnreadableEntry(str(error)) from error
        if not all(isinstance(getattr(entry, name), str)
                   for name in ("tenant", "release", "user", "email", "object", "download_id", "request_sha256", "at")):
            raise UnreadableEntry("user, tenant, object, release, download_id, request_sha256 and at must be strings")
        if type(entry.status) is not int or not 100 <= entry.status <= 599:
            raise UnreadableEntry("status must be an HTTP status code")
        return entry


def ledger_subject(tenant: str, release: str) -> str:
    """Entries of one release share a subject so an admin lists them with one ledger query."""
    return f"portal/{tenant}/{release}" if release else f"portal/{tenant}"


def request_hash(method: str, path: str, query: str, user: str, at: str) -> str:
    material = "\n".join((method.upper(), path, query, user, at)).encode()
    return hashlib.sha256(material).hexdigest()


CSV_COLUMNS = ("seq", "at", "user", "email", "tenant", "action", "object", "release", "download_id", "request_sha256",
               "entry_hash")
