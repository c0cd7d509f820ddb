"""Ledger reads are tenant-scoped in the real service (issue #21): Get and List name a tenant, the verified caller
must be allowed to read it, and only entries appended for it come back. The service runs as its own roles on a
database of its own (region-a, the suite's residency data: alpha pinned here, gamma to region-b, beta global)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import NamedTuple

import grpc
import pytest
from ig.ledger.v1 import ledger_pb2
from ig_evidence.testing import RunningEvidence, evidence_on_own_database, forwarded_auditor, ledger_stub

pytestmark = pytest.mark.e2e
KIND = "release.read-tenancy-test"


@pytest.fixture(scope="module")
def region_a(infra: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEvidence]:
    with evidence_on_own_database(infra, "ig_ledger_read_tenancy", tmp_path_factory.mktemp("blobs")) as running:
        yield running


class Appended(NamedTuple):
    subject: str
    alpha: list[int]
    beta: list[int]
    beta_access: int


@pytest.fixture(scope="module")
def appended(region_a: RunningEvidence) -> Appended:
    """alpha's and beta's entries under one subject, interleaved, then a beta auditor's access entry."""
    subject = f"read-{uuid.uuid4().hex[:12]}"
    stub, seqs = ledger_stub(region_a), {"alpha": [], "beta": []}  # type: dict[str, list[int]]
    for tenant in ("alpha", "beta", "alpha", "beta"):
        seqs[tenant].append(stub.Append(ledger_pb2.AppendRequest(kind=KIND, subject=subject,
                                                                 payload=tenant.encode(), tenant=tenant)).entry.seq)
    access = ledger_stub(region_a, "audit-portal").Append(
        ledger_pb2.AppendRequest(kind="ig.audit.access", subject=subject, payload=b"{}", tenant="beta"),
        metadata=forwarded_auditor("beta")).entry
    return Appended(subject, seqs["alpha"], seqs["beta"], access.seq)


def test_each_tenant_lists_and_gets_only_its_own_entries(region_a: RunningEvidence,
                                                         appended: Appended) -> None:
    stub = ledger_stub(region_a)
    own = {"alpha": appended.alpha, "beta": appended.beta}
    for tenant, other in (("alpha", "beta"), ("beta", "alpha")):
        listed = stub.List(ledger_pb2.ListRequest(tenant=tenant, subject=appended.subject)).entries
        assert [e.seq for e in listed] == own[tenant] + ([appended.beta_access] if tenant == "beta" else [])
        assert {e.payload for e in listed if e.kind == KIND} == {tenant.encode()}
        # the whole ledger from seq 1, the page as large as allowed: still not one foreign row
        everything = stub.List(ledger_pb2.ListRequest(tenant=tenant, page_size=1000)).entries
        assert not {e.seq for e in everything} & set(own[other])
        assert stub.Get(ledger_pb2.GetRequest(tenant=tenant, seq=own[tenant][0])).entry.payload == \
            tenant.encode()


def test_another_tenants_entry_is_not_found_worded_as_a_missing_one(region_a: RunningEvidence,
                                                                    appended: Appended) -> None:
    stub = ledger_stub(region_a)
    answers = []
    for seq in (appended.beta[0], 10 ** 9):
        with pytest.raises(grpc.RpcError) as refused:
            stub.Get(ledger_pb2.GetRequest(tenant="alpha", seq=seq))
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND
        answers.append(refused.value.details().replace(str(seq), "N"))
    assert answers[0] == answers[1]


def test_the_portal_reads_its_access_entries_alone_and_a_users_own_tenant_with_the_user(
        region_a: RunningEvidence, appended: Appended) -> None:
    portal = ledger_stub(region_a, "audit-portal")
    # the access-log feed: no user behind it, the table's ledger_readers grant
    feed = portal.List(ledger_pb2.ListRequest(tenant="beta", kind="ig.audit.access", page_size=1000)).entries
    assert appended.beta_access in {e.seq for e in feed}
    assert not {e.seq for e in feed} & set(appended.alpha)
    as_user = portal.List(ledger_pb2.ListRequest(tenant="beta", subject=appended.subject),
                          metadata=forwarded_auditor("beta")).entries
    assert [e.seq for e in as_user] == [*appended.beta, appended.beta_access]


@pytest.mark.parametrize(("identity", "tenant", "user"), [
    ("operator", "alpha", None),  # may call List and Get (the method table), but reads no tenant
    ("bench", "alpha", None),  # its own tenant only
    ("audit-portal", "alpha", "beta"),  # a user of beta, forwarded, naming alpha
    ("audit-portal", "bench", None),  # the portal alone: only its ledger_readers tenants
])
@pytest.mark.parametrize("method", ["Get", "List"])
def test_a_caller_not_allowed_to_read_the_tenant_is_permission_denied(
        region_a: RunningEvidence, appended: Appended, method: str, identity: str, tenant: str,
        user: str | None) -> None:
    stub = ledger_stub(region_a, identity)
    request = (ledger_pb2.GetRequest(tenant=tenant, seq=appended.alpha[0]) if method == "Get"
               else ledger_pb2.ListRequest(tenant=tenant))
    with pytest.raises(grpc.RpcError) as refused:
        getattr(stub, method)(request, metadata=forwarded_auditor(user) if user else ())
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED, refused.value.details()
    assert refused.value.details().startswith("tenant: ") and repr(tenant) in refused.value.details()


@pytest.mark.parametrize("method", ["Get", "List"])
def test_a_missing_tenant_is_invalid_argument_and_a_tenant_pinned_elsewhere_is_refused_here(
        region_a: RunningEvidence, method: str) -> None:
    def call(identity: str, tenant: str) -> None:
        request = (ledger_pb2.GetRequest(tenant=tenant, seq=1) if method == "Get"
                   else ledger_pb2.ListRequest(tenant=tenant))
        getattr(ledger_stub(region_a, identity), method)(request)

    with pytest.raises(grpc.RpcError) as missing:
        call("release", "")
    assert missing.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert missing.value.details().startswith("tenant: ")
    # the portal may read gamma's entries (ledger_readers), but gamma is pinned to region-b
    with pytest.raises(grpc.RpcError) as pinned:
        call("audit-portal", "gamma")
    assert pinned.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "tenant 'gamma' is pinned to region-b" in pinned.value.details()
