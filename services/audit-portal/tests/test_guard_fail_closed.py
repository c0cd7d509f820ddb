"""The ledger write comes before the response: when it fails, the request fails closed with 503.

The ledger and the outbox are test doubles here (a ledger that refuses, an outbox that must never be reached); the
e2e tests check the real ledger holds exactly one entry per access.
"""

from __future__ import annotations

import pytest
from fastapi import HTTPException
from ig_common.residency import Residency
from ig_portal.api.guard import Guard
from ig_portal.api.residency import ResidencyGate
from ig_portal.clients.ledger import LedgerUnavailable
from ig_portal.domain.access import AccessEntry, Action
from ig_portal.domain.identity import Principal, Role
from starlette.requests import Request


class RefusingLedger:
    def __init__(self) -> None:
        self.attempts: list[AccessEntry] = []

    async def append(self, entry: AccessEntry, principal: Principal) -> int:
        self.attempts.append(entry)
        raise LedgerUnavailable("ledger down")


class UnreachableOutbox:
    async def publish(self, entry: AccessEntry, ledger_seq: int) -> None:
        raise AssertionError("nothing may be published for an access the ledger did not record")


def request() -> Request:
    return Request({"type": "http", "method": "GET", "path": "/audit/releases", "query_string": b"",
                    "headers": [], "client": ("127.0.0.1", 1234)})


async def test_access_is_refused_when_the_ledger_cannot_record_it() -> None:
    ledger = RefusingLedger()
    guard = Guard(provider=None, sessions=None, limits=None, ledger=ledger,  # type: ignore[arg-type]
                  accesses=UnreachableOutbox(), groups_claim="groups", tenant_claim="tenant", requests_per_minute=60,
                  downloads_per_minute=10, residency=ResidencyGate(Residency("region-a")))
    with pytest.raises(HTTPException) as refused:
        await guard.record(request(), Principal("u1", "alpha", Role.AUDITOR), Action.READ, "releases")
    assert refused.value.status_code == 503
    assert [e.object for e in ledger.attempts] == ["releases"]
