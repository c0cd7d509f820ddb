"""The table's ledger_readers section: which tenants' ledger entries a workload may read with no user behind the call.
Held by known identities only, never "every tenant", and granting nothing else (not a tenant to act for)."""

from __future__ import annotations

import pytest
from ig_common.authz import AuthorizationTable
from ig_common.authz.table import TableError

BASE = {"identities": ["audit-portal", "release"], "methods": {"/ig.ledger.v1.LedgerService/List": ["audit-portal"]}}


def test_a_reader_reads_its_tenants_and_acts_for_none() -> None:
    table = AuthorizationTable.from_document({**BASE, "ledger_readers": {"audit-portal": ["alpha", "beta"]}})
    assert table.ledger_tenants_readable_by("audit-portal") == frozenset({"alpha", "beta"})
    assert table.tenants_of("audit-portal") == frozenset()
    assert table.ledger_tenants_readable_by("release") == frozenset()
    assert AuthorizationTable.from_document(BASE).ledger_tenants_readable_by("audit-portal") == frozenset()


@pytest.mark.parametrize(("readers", "message"), [
    ({"stranger": ["alpha"]}, "ledger_readers: unknown identities ['stranger']"),
    ({"audit-portal": ["*"]}, "'*' is only for methods"),
    ({"audit-portal": "alpha"}, "expected a list of names"),
])
def test_a_malformed_section_stops_the_table(readers: object, message: str) -> None:
    with pytest.raises(TableError, match=message.replace("[", r"\[").replace("]", r"\]").replace("*", r"\*")):
        AuthorizationTable.from_document({**BASE, "ledger_readers": readers})
