"""Ledger reads are tenant-scoped (issue #21): Get and List name a tenant the verified caller may read, and return only
entries appended for it. The servicer runs in-process over the real ledger store on the real PostgreSQL (so the
store's tenant filter is what is tested), with the real authorization table and residency data, and the caller bound
as the authorization interceptor binds it (the real process: e2e/test_ledger_read_tenancy.py).

Another tenant's entry is NOT_FOUND by Get, worded as for a seq that does not exist: a reader cannot tell "not yours"
from "not there"."""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import asyncpg
import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from ig.ledger.v1 import ledger_pb2
from ig_common.authz import AuthorizationTable, Caller
from ig_common.db import create_pool, prepare_schema
from ig_common.residency import load_residency
from ig_common.spiffe import SpiffeId
from ig_evidence.api.ledger import LedgerServicer
from ig_evidence.api.residency import ResidencyGate
from ig_evidence.domain.chain import next_entry
from ig_evidence.store import MIGRATIONS
from ig_evidence.store.ledger import CheckpointSigner, LedgerStore

from .test_residency_gate import POLICY_DATA, PORTAL, REPO, Aborted, Context, acting, portal_user, release_job

pytestmark = pytest.mark.integration
TABLE = AuthorizationTable.load(REPO / "policies" / "authz" / "grpc-methods.yaml")
BENCH = Caller(SpiffeId("maestro.local", "ig", "bench"), TABLE.tenants_of("bench"))
PORTAL_ALONE = Caller(PORTAL, TABLE.tenants_of("audit-portal"))  # the access-log feed: no user behind it
KIND = "release.read-test"


class Seeded(NamedTuple):
    store: LedgerStore
    alpha: list[int]
    beta: list[int]
    unattributed: int


@pytest.fixture
async def seeded(database_url: str) -> AsyncIterator[Seeded]:
    """alpha's and beta's entries interleaved, sharing kind and subject, and one appended for no tenant."""
    schema = f"evidence_r_{uuid.uuid4().hex[:8]}"
    pool = await create_pool(database_url)
    await prepare_schema(pool, schema, MIGRATIONS)
    store = LedgerStore(pool, schema, CheckpointSigner("test.example/ledger", Ed25519PrivateKey.generate()))
    seqs: dict[str | None, list[int]] = {"alpha": [], "beta": [], None: []}
    for n, tenant in enumerate(["alpha", "beta", "alpha", None, "beta", "alpha"]):
        entry, _ = await store.append(KIND, "v1.2.1", f'{{"n": {n}}}'.encode(), tenant=tenant)
        seqs[tenant].append(entry.fields.seq)
    try:
        yield Seeded(store, seqs["alpha"], seqs["beta"], seqs[None][0])
    finally:
        await store.close()
        await pool.execute(f"DROP SCHEMA {schema} CASCADE")
        await pool.close()


def ledger(store: LedgerStore, region: str = "region-a") -> LedgerServicer:
    return LedgerServicer(store, TABLE, residency=ResidencyGate(load_residency(str(POLICY_DATA), region)))


async def listed(servicer: LedgerServicer, tenant: str, **filters: str | int) -> list[int]:
    reply = await servicer.List(ledger_pb2.ListRequest(tenant=tenant, **filters), Context())  # type: ignore[arg-type]
    return [e.seq for e in reply.entries]


async def got(servicer: LedgerServicer, tenant: str, seq: int) -> ledger_pb2.Entry:
    reply = await servicer.Get(ledger_pb2.GetRequest(tenant=tenant, seq=seq), Context())  # type: ignore[arg-type]
    return reply.entry


@pytest.mark.parametrize(("who", "caller", "tenant"), [
    ("a workload granted the tenant", release_job(), "alpha"),
    ("a workload granted the tenant", release_job(), "beta"),
    ("a user of the tenant, forwarded", portal_user("beta"), "beta"),
    ("the portal's feed, granted ledger reads only", PORTAL_ALONE, "alpha"),
])
async def test_an_allowed_reader_gets_and_lists_exactly_its_tenants_entries(seeded: Seeded, who: str, caller: Caller,
                                                                            tenant: str) -> None:
    own = seeded.alpha if tenant == "alpha" else seeded.beta
    servicer = ledger(seeded.store)
    with acting(caller):
        assert await listed(servicer, tenant) == own, who
        assert await listed(servicer, tenant, kind=KIND, subject="v1.2.1") == own, who
        assert await listed(servicer, tenant, from_seq=own[1]) == own[1:], who
        entry = await got(servicer, tenant, own[-1])
    assert entry.seq == own[-1] and entry.payload, who


async def test_list_never_returns_a_foreign_or_unattributed_row(seeded: Seeded) -> None:
    servicer = ledger(seeded.store)
    with acting(release_job()):
        everything = set(await listed(servicer, "alpha", page_size=1000)) | set(
            await listed(servicer, "beta", page_size=1000))
        # a window covering every seq, and a page of one starting on a foreign row
        assert set(await listed(servicer, "alpha", from_seq=1, to_seq=seeded.unattributed + 10)) == set(seeded.alpha)
        assert await listed(servicer, "beta", from_seq=seeded.alpha[0], page_size=1) == [seeded.beta[0]]
    assert everything == set(seeded.alpha) | set(seeded.beta)
    assert seeded.unattributed not in everything


async def test_get_of_another_tenants_entry_is_not_found_like_a_missing_one(seeded: Seeded) -> None:
    servicer = ledger(seeded.store)
    answers = {}
    with acting(release_job()):
        for name, seq in (("beta's", seeded.beta[0]), ("unattributed", seeded.unattributed), ("missing", 999)):
            with pytest.raises(Aborted) as refused:
                await got(servicer, "alpha", seq)
            assert refused.value.code == grpc.StatusCode.NOT_FOUND, name
            answers[name] = re.sub(r"\d+", "N", refused.value.details)
    assert len(set(answers.values())) == 1, answers  # the same words: existence is not leaked


@pytest.mark.parametrize(("who", "caller", "tenant"), [
    ("bench acts for bench only", BENCH, "alpha"),
    ("the release job is not granted gamma", release_job(), "gamma"),
    ("a user of beta naming alpha: refused, not re-read as beta's", portal_user("beta"), "alpha"),
    ("the portal alone reads only its ledger_readers tenants", PORTAL_ALONE, "bench"),
])
@pytest.mark.parametrize("method", ["Get", "List"])
async def test_a_caller_not_granted_the_tenant_is_permission_denied(seeded: Seeded, method: str, who: str,
                                                                    caller: Caller, tenant: str) -> None:
    servicer = ledger(seeded.store)
    with acting(caller), pytest.raises(Aborted) as refused:
        await (got(servicer, tenant, seeded.alpha[0]) if method == "Get" else listed(servicer, tenant))
    assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED, who
    assert refused.value.details.startswith("tenant: ") and repr(tenant) in refused.value.details, who


@pytest.mark.parametrize("tenant", ["", "Alpha", "-alpha", "alpha\n", "a" * 64])
@pytest.mark.parametrize("method", ["Get", "List"])
async def test_a_missing_or_malformed_tenant_is_invalid_argument_naming_the_field(seeded: Seeded, method: str,
                                                                                  tenant: str) -> None:
    servicer = ledger(seeded.store)
    with acting(release_job()), pytest.raises(Aborted) as refused:
        await (got(servicer, tenant, seeded.alpha[0]) if method == "Get" else listed(servicer, tenant))
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details.startswith("tenant: ")


@pytest.mark.parametrize("method", ["Get", "List"])
async def test_region_b_refuses_reading_alpha_pinned_to_region_a(seeded: Seeded, method: str) -> None:
    servicer = ledger(seeded.store, "region-b")
    with acting(release_job()), pytest.raises(Aborted) as refused:
        await (got(servicer, "alpha", seeded.alpha[0]) if method == "Get" else listed(servicer, "alpha"))
    assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "tenant 'alpha' is pinned to region-a" in refused.value.details
    with acting(release_job()):
        assert await listed(servicer, "beta") == seeded.beta  # global: served here too


async def test_deduplicate_never_hands_out_another_tenants_entry(seeded: Seeded) -> None:
    first, _ = await seeded.store.append(KIND, "same", b"same", deduplicate=True, tenant="alpha")
    other, existed = await seeded.store.append(KIND, "same", b"same", deduplicate=True, tenant="beta")
    again, existed_again = await seeded.store.append(KIND, "same", b"same", deduplicate=True, tenant="beta")
    assert not existed and other.fields.seq != first.fields.seq
    assert existed_again and again.fields.seq == other.fields.seq
    servicer = ledger(seeded.store)
    with acting(release_job()):
        assert other.fields.seq in await listed(servicer, "beta", subject="same")
        assert await listed(servicer, "alpha", subject="same") == [first.fields.seq]


def _json(tenant: str) -> bytes:
    return f'{{"release": "v1", "tenant": "{tenant}"}}'.encode()


async def test_migration_0011_attributes_only_entries_whose_appender_verified_the_tenant(database_url: str,
                                                                                        tmp_path: Path) -> None:
    """Rows appended before 0011: the portal's access entries and the service's registrations get the tenant their
    payload names (their appender verified it); any other kind, or a payload that names none or cannot be read,
    stays unattributed. The chain and the proofs over it are unchanged."""
    before = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, before, ignore=shutil.ignore_patterns("0011_*", "0012_*"))
    schema = f"evidence_m_{uuid.uuid4().hex[:8]}"
    rows = [("ig.audit.access", _json("alpha"), "alpha"), ("evidence.bundle_registered", _json("beta"), "beta"),
            ("release.notes", _json("alpha"), None),  # a caller-chosen payload: nothing verified its "tenant"
            ("evidence.manifest", b'{"release": "v1"}', None), ("ig.audit.access", b"\xff not json", None),
            ("ig.audit.access", _json("Not A Tenant"), None), ("ig.audit.access", b"[1, 2]", None)]
    pool = await create_pool(database_url)
    try:
        await prepare_schema(pool, schema, before)
        size, prev, columns = 0, "0" * 64, [[] for _ in range(8)]
        for kind, payload, _ in rows:
            fields, digest = next_entry(size, prev, datetime.now(UTC), kind, "s", payload)
            for column, value in zip(columns, (fields.seq, fields.ts, kind, "s", payload, fields.payload_sha256,
                                               fields.prev_hash, digest), strict=True):
                column.append(value)
            size, prev = fields.seq, digest
        await pool.fetchval(f"SELECT {schema}.ledger_append($1, $2, $3, $4, $5, $6, $7, $8)", *columns)
        hashes_before = await pool.fetch(f"SELECT seq, entry_hash FROM {schema}.ledger_entries ORDER BY seq")
        await prepare_schema(pool, schema, MIGRATIONS)
        tenants = [r["tenant"] for r in await pool.fetch(f"SELECT tenant FROM {schema}.ledger_entries ORDER BY seq")]
        assert tenants == [expected for _, _, expected in rows]
        assert await pool.fetch(f"SELECT seq, entry_hash FROM {schema}.ledger_entries ORDER BY seq") == hashes_before
        store = LedgerStore(pool, schema, CheckpointSigner("test.example/ledger", Ed25519PrivateKey.generate()))
        try:
            assert (await store.verify()).ok
            # the append-only trigger is back on after the backfill, and the old ledger_append is gone
            with pytest.raises(asyncpg.PostgresError, match="append-only"):
                await pool.execute(f"UPDATE {schema}.ledger_entries SET tenant = 'beta' WHERE seq = 1")
            with pytest.raises(asyncpg.UndefinedFunctionError):
                await pool.fetchval(f"SELECT {schema}.ledger_append($1, $2, $3, $4, $5, $6, $7, $8)", *columns)
        finally:
            await store.close()
    finally:
        await pool.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await pool.close()
