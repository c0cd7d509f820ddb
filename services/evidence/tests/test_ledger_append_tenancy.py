"""Ledger appends name their tenant: taken only when the verified caller may act for exactly that tenant and the
tenant is not pinned to another region than the service's, checked before the ledger store is asked. The servicer
runs in-process on a recording stand-in of its store, with the real authorization table and residency data, and the
caller bound as the authorization interceptor binds it (the real process: e2e/test_ledger_append_tenancy.py)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import grpc
import pytest
from ig.ledger.v1 import ledger_pb2
from ig_common.authz import AuthorizationTable, Caller
from ig_common.residency import load_residency
from ig_common.spiffe import SpiffeId
from ig_evidence.api.ledger import LedgerServicer
from ig_evidence.api.residency import ResidencyGate
from ig_evidence.domain.chain import GENESIS_HASH, StoredEntry, next_entry
from ig_evidence.store.ledger import Append

from .test_residency_gate import POLICY_DATA, REPO, Aborted, Context, acting, portal_user, release_job

TABLE = AuthorizationTable.load(REPO / "policies" / "authz" / "grpc-methods.yaml")
BENCH = Caller(SpiffeId("maestro.local", "ig", "bench"), TABLE.tenants_of("bench"))


class AppendingLedger:
    """The ledger store's append side: records what it was asked to append and answers as the store does."""

    def __init__(self) -> None:
        self.appended: list[Append] = []

    async def append(self, kind: str, subject: str, payload: bytes, *, deduplicate: bool = False,
                     tenant: str | None = None) -> tuple[StoredEntry, bool]:
        return (await self.append_many([Append(kind, subject, payload, deduplicate, tenant)]))[0]

    async def append_many(self, appends: Sequence[Append]) -> list[tuple[StoredEntry, bool]]:
        answers = []
        for item in appends:
            self.appended.append(item)
            fields, digest = next_entry(len(self.appended) - 1, GENESIS_HASH, datetime.now(UTC), item.kind,
                                        item.subject, item.payload)
            answers.append((StoredEntry(fields, digest, item.payload), False))
        return answers


def ledger_in(region: str) -> tuple[LedgerServicer, AppendingLedger]:
    store = AppendingLedger()
    gate = ResidencyGate(load_residency(str(POLICY_DATA), region))
    return LedgerServicer(store, TABLE, residency=gate), store  # type: ignore[arg-type]


def append(tenant: str, kind: str = "release.tenancy-test") -> ledger_pb2.AppendRequest:
    return ledger_pb2.AppendRequest(kind=kind, subject="v1.2.1", payload=b"{}", tenant=tenant)


async def call(servicer: LedgerServicer, method: str, *requests: ledger_pb2.AppendRequest) -> object:
    if method == "Append":
        return await servicer.Append(requests[0], Context())  # type: ignore[arg-type]
    return await servicer.AppendBatch(ledger_pb2.AppendBatchRequest(entries=requests),
                                      Context())  # type: ignore[arg-type]


def field(method: str, index: int = 0) -> str:
    return "tenant" if method == "Append" else f"entries[{index}].tenant"


@pytest.mark.parametrize("method", ["Append", "AppendBatch"])
async def test_region_b_refuses_an_append_for_alpha_pinned_to_region_a_before_the_store_is_asked(
        method: str) -> None:
    servicer, store = ledger_in("region-b")
    with acting(release_job()), pytest.raises(Aborted) as refused:
        await call(servicer, method, append("alpha"))
    assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "tenant 'alpha' is pinned to region-a" in refused.value.details
    assert "served from region-b" in refused.value.details
    assert store.appended == []


async def test_a_batch_with_one_entry_for_a_pinned_tenant_appends_none_of_it() -> None:
    servicer, store = ledger_in("region-b")
    with acting(release_job()), pytest.raises(Aborted) as refused:
        await call(servicer, "AppendBatch", append("beta"), append("beta"), append("alpha"))
    assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION and "'alpha'" in refused.value.details
    assert store.appended == []


@pytest.mark.parametrize("method", ["Append", "AppendBatch"])
@pytest.mark.parametrize(("who", "caller", "tenant", "kind"), [
    # a workload naming a tenant the table does not grant it (bench acts for "bench" only)
    ("bench", BENCH, "alpha", "bench.append"),
    ("release job", release_job(), "gamma", "release.tenancy-test"),
    # a forwarded user naming another tenant than the user's own: refused, not re-read as the user's
    ("beta's auditor", portal_user("beta"), "alpha", "ig.audit.access"),
])
async def test_a_caller_not_allowed_for_the_tenant_is_refused(method: str, who: str, caller: Caller, tenant: str,
                                                              kind: str) -> None:
    servicer, store = ledger_in("region-a")
    with acting(caller), pytest.raises(Aborted) as refused:
        await call(servicer, method, append(tenant, kind))
    assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED, who
    assert refused.value.details.startswith(f"{field(method)}: "), refused.value.details
    assert repr(tenant) in refused.value.details
    assert store.appended == []


@pytest.mark.parametrize("method", ["Append", "AppendBatch"])
@pytest.mark.parametrize("tenant", ["", "Alpha", "alpha\n", "-alpha", "a" * 64])
async def test_a_missing_or_malformed_tenant_is_invalid_argument_naming_the_field(method: str, tenant: str) -> None:
    servicer, store = ledger_in("region-a")
    with acting(release_job()), pytest.raises(Aborted) as refused:
        await call(servicer, method, append(tenant))
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details.startswith(f"{field(method)}: ")
    assert store.appended == []


async def test_a_malformed_tenant_in_a_later_batch_entry_is_named_by_its_index() -> None:
    servicer, store = ledger_in("region-a")
    with acting(release_job()), pytest.raises(Aborted) as refused:
        await call(servicer, "AppendBatch", append("alpha"), append("beta"), append(""))
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details.startswith("entries[2].tenant: ")
    assert store.appended == []


@pytest.mark.parametrize(("region", "caller", "tenant", "kind"), [
    ("region-a", release_job(), "alpha", "release.tenancy-test"),  # at home
    ("region-b", release_job(), "beta", "release.tenancy-test"),  # global: either region
    ("region-b", BENCH, "bench", "bench.append"),
    ("region-a", portal_user("alpha"), "alpha", "ig.audit.access"),  # a user of the tenant, forwarded
])
@pytest.mark.parametrize("method", ["Append", "AppendBatch"])
async def test_an_allowed_tenant_in_its_region_is_appended(method: str, region: str, caller: Caller, tenant: str,
                                                           kind: str) -> None:
    servicer, store = ledger_in(region)
    with acting(caller):
        await call(servicer, method, append(tenant, kind), *([append(tenant, kind)] if method == "AppendBatch"
                                                             else []))
    assert [a.kind for a in store.appended] == [kind] * (2 if method == "AppendBatch" else 1)
    # recorded for the tenant it was admitted for: what Get and List filter on (test_ledger_read_tenancy.py)
    assert [a.tenant for a in store.appended] == [tenant] * len(store.appended)


def test_the_stand_ins_match_the_table_they_are_judged_by() -> None:
    """The cases above lean on the table's grants: bench acts for bench only, the release job for alpha and beta,
    the portal for none of its own, and data.json pins alpha to region-a (so a failure above is not a table edit)."""
    assert TABLE.tenants_of("bench") == frozenset({"bench"})
    assert TABLE.tenants_of("release") == frozenset({"alpha", "beta"})
    assert TABLE.tenants_of("audit-portal") == frozenset()
    assert load_residency(str(POLICY_DATA), "region-b").refusal("alpha") is not None
    assert load_residency(str(POLICY_DATA), "region-b").refusal("beta") is None
