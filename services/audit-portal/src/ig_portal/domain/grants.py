"""Access grants (a trust center's approvals): an admin lets one auditor see one release for a time window,
optionally behind an NDA the auditor accepts once. Pure: what a grant says and what it admits.

A release with no grant (revoked ones aside) is open to every auditor of its tenant, as before grants existed; once
a release has a grant it is governed, and an auditor sees it only through a grant of theirs whose window holds now.
Admins of the tenant always see every release (they grant access to it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

GRANT_ID = re.compile(r"g_[0-9a-f]{24}")
EMAIL = re.compile(r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,190}\.[A-Za-z]{2,24}")
NDA_MAX_CHARS = 20_000
MAX_WINDOW = timedelta(days=366)


class GrantRefused(ValueError):
    """A grant request that cannot be made (the message names the field)."""


@dataclass(frozen=True)
class Grant:
    id: str
    tenant: str
    release: str
    auditor: str  # the auditor's e-mail, lower case: what an admin knows them by
    valid_from: datetime
    valid_until: datetime
    nda_text: str = ""
    granted_by: str = ""
    revoked: bool = False
    nda_accepted_at: datetime | None = None

    def holds_at(self, now: datetime) -> bool:
        return not self.revoked and self.valid_from <= now < self.valid_until

    @property
    def nda_pending(self) -> bool:
        return bool(self.nda_text) and self.nda_accepted_at is None

    def describe(self) -> str:
        """How a watermark names it."""
        return (f"grant {self.id} by {self.granted_by} valid {self.valid_from.isoformat(timespec='seconds')} to "
                f"{self.valid_until.isoformat(timespec='seconds')}")


class Access(StrEnum):
    OPEN = "open"  # no grant governs the release (or the caller is an admin)
    GRANTED = "granted"  # through a grant whose window holds and whose NDA, if any, was accepted
    NDA_PENDING = "nda pending"  # a grant holds, but its NDA has not been accepted yet
    HIDDEN = "hidden"  # governed, and no grant of the caller's holds now: the release does not exist for them


@dataclass(frozen=True)
class Decision:
    access: Access
    grant: Grant | None = None

    @property
    def visible(self) -> bool:
        return self.access is not Access.HIDDEN


def decide(grants: Iterable[Grant], *, release: str, auditor: str, is_admin: bool, now: datetime) -> Decision:
    """What the caller may see of ``release`` given the tenant's ``grants``."""
    if is_admin:
        return Decision(Access.OPEN)
    governing = [g for g in grants if g.release == release and not g.revoked]
    if not governing:
        return Decision(Access.OPEN)
    holding = [g for g in governing if g.auditor == auditor.lower() and g.holds_at(now)]
    if not holding:
        return Decision(Access.HIDDEN)
    accepted = [g for g in holding if not g.nda_pending]
    if accepted:
        return Decision(Access.GRANTED, max(accepted, key=lambda g: g.valid_until))
    return Decision(Access.NDA_PENDING, max(holding, key=lambda g: g.valid_until))


def check_request(*, auditor: str, valid_from: datetime, valid_until: datetime, nda_text: str) -> str:
    """The auditor's normalised e-mail, or GrantRefused naming the field."""
    if not EMAIL.fullmatch(auditor.strip()):
        raise GrantRefused("auditor: an e-mail address")
    if valid_from.tzinfo is None or valid_until.tzinfo is None:
        raise GrantRefused("valid_from, valid_until: need a time zone")
    if valid_until <= valid_from:
        raise GrantRefused("valid_until: must be after valid_from")
    if valid_until - valid_from > MAX_WINDOW:
        raise GrantRefused(f"valid_until: a window is at most {MAX_WINDOW.days} days")
    if len(nda_text) > NDA_MAX_CHARS:
        raise GrantRefused(f"nda_text: at most {NDA_MAX_CHARS} characters")
    return auditor.strip().lower()
