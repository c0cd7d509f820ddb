"""Ledger appends are tenant-scoped in the real service (issue #21): region-b's evidence service refuses an append
for alpha, pinned to region-a (FAILED_PRECONDITION naming the tenant and its region) and keeps no row of it, in the
ledger or its outbox; a caller that may not act for the named tenant is refused; an allowed append is kept.

The service runs as its own roles on a database of its own with IG_REGION=region-b and the suite's residency data
(policies/rego/ig/config/data.json: alpha pinned to region-a, beta global)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import grpc
import pytest
from ig.ledger.v1 import ledger_pb2
from ig_evidence.testing import (
    RunningEvidence,
    cli,
    evidence_on_own_database,
    forwarded_auditor,
    ledger_stub,
    write_inputs,
)

pytestmark = pytest.mark.e2e
KIND = "release.tenancy-test"


@pytest.fixture(scope="module")
def region_b(infra: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEvidence]:
    with evidence_on_own_database(infra, "ig_ledger_tenancy", tmp_path_factory.mktemp("blobs"),
                                  IG_REGION="region-b") as running:
        yield running


def rows_carrying(service: RunningEvidence, marker: str) -> tuple[int, int, int]:
    """(ledger entries whose subject or payload carries ``marker``, outbox rows whose event does, all entries), read
    as the superuser below the API."""
    async def count() -> tuple[int, int, int]:
        conn = await asyncpg.connect(service.database_url)
        try:
            needle = marker.encode()
            entries = await conn.fetchval("SELECT count(*) FROM evidence.ledger_entries WHERE strpos(subject, $1) > 0 "
                                          "OR position($2::bytea IN payload) > 0", marker, needle)
            events = await conn.fetchval("SELECT count(*) FROM evidence.outbox "
                                         "WHERE position($1::bytea IN payload) > 0", needle)
            total = await conn.fetchval("SELECT count(*) FROM evidence.ledger_entries")
            return int(entries), int(events), int(total)
        finally:
            await conn.close()

    return asyncio.run(count())


def test_region_b_refuses_alphas_appends_and_its_store_holds_no_row_of_them(region_b: RunningEvidence,
                                                                            tmp_path: Path) -> None:
    marker = f"alpha-{uuid.uuid4().hex[:12]}"
    stub = ledger_stub(region_b)
    _, _, total_before = rows_carrying(region_b, marker)
    calls = {
        "Append": lambda: stub.Append(ledger_pb2.AppendRequest(kind=KIND, subject=marker, payload=marker.encode(),
                                                               tenant="alpha")),
        # beta's entry first: the batch is refused whole, beta's part included
        "AppendBatch": lambda: stub.AppendBatch(ledger_pb2.AppendBatchRequest(entries=[
            ledger_pb2.AppendRequest(kind=KIND, subject=f"{marker}-beta", payload=marker.encode(), tenant="beta"),
            ledger_pb2.AppendRequest(kind=KIND, subject=f"{marker}-alpha", payload=marker.encode(), tenant="alpha")])),
    }
    for method, call in calls.items():
        with pytest.raises(grpc.RpcError) as refused:
            call()
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION, (method, refused.value.details())
        assert "tenant 'alpha' is pinned to region-a" in refused.value.details()
        assert "not served from region-b" in refused.value.details()
    # ig-evidence build anchoring alpha's release in region-b's ledger fails before a bundle is written
    out = tmp_path / "out"
    built = cli("build", "--release", "v1.2.1", "--inputs", str(write_inputs(tmp_path / "inputs")), "--out",
                str(out), "--key", str(_keys(tmp_path) / "cosign.key"), "--ledger", region_b.grpc_target,
                "--tenant", "alpha", check=False)
    assert built.returncode == 2, built.stdout + built.stderr
    assert "FAILED_PRECONDITION" in built.stderr and "tenant 'alpha' is pinned to region-a" in built.stderr
    assert not out.exists()
    assert rows_carrying(region_b, marker) == (0, 0, total_before)


def _keys(tmp_path: Path) -> Path:
    cli("keygen", "--out", str(tmp_path / "keys"))
    return tmp_path / "keys"


def test_a_global_tenant_is_appended_at_region_b_and_found_where_alphas_was_not(region_b: RunningEvidence) -> None:
    """The positive control of the test above: the same lookup finds beta's entry and its event."""
    marker = f"beta-{uuid.uuid4().hex[:12]}"
    entry = ledger_stub(region_b).Append(ledger_pb2.AppendRequest(kind=KIND, subject=marker, payload=marker.encode(),
                                                             tenant="beta")).entry
    assert entry.seq >= 1 and entry.subject == marker
    # the entry and its event commit together; the relay marks the event published and keeps the row
    assert rows_carrying(region_b, marker)[:2] == (1, 1)


@pytest.mark.parametrize(("identity", "tenant", "kind", "user"), [
    ("bench", "alpha", "bench.append", None),  # the table grants bench its own tenant only
    ("release", "gamma", KIND, None),  # nor gamma to the release job, though gamma is region-b's own
    ("audit-portal", "alpha", "ig.audit.access", "beta"),  # a user of beta, forwarded, naming alpha
    ("audit-portal", "beta", "ig.audit.access", None),  # the portal acts for no tenant without a user
])
def test_a_caller_not_allowed_for_the_tenant_is_refused(region_b: RunningEvidence, identity: str, tenant: str,
                                                        kind: str, user: str | None) -> None:
    marker = f"{identity}-{uuid.uuid4().hex[:12]}"
    metadata = forwarded_auditor(user) if user else ()
    with pytest.raises(grpc.RpcError) as refused:
        ledger_stub(region_b, identity).Append(ledger_pb2.AppendRequest(kind=kind, subject=marker, payload=b"{}",
                                                                   tenant=tenant), metadata=metadata)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED, refused.value.details()
    assert refused.value.details().startswith("tenant: ") and repr(tenant) in refused.value.details()
    assert rows_carrying(region_b, marker)[0] == 0


def test_a_user_of_the_tenant_forwarded_by_the_portal_appends(region_b: RunningEvidence) -> None:
    marker = f"portal-{uuid.uuid4().hex[:12]}"
    entry = ledger_stub(region_b, "audit-portal").Append(
        ledger_pb2.AppendRequest(kind="ig.audit.access", subject=marker, payload=b"{}", tenant="beta"),
        metadata=forwarded_auditor("beta")).entry
    assert entry.subject == marker and rows_carrying(region_b, marker)[0] == 1
