"""The access log's feed reads tenant by tenant (the ledger returns one tenant's entries per List, issue #21): each
tenant from its own position, a tenant the ledger refuses does not stop the others, and an entry whose payload names
another tenant than the one it was read under gets no row. The feed runs on the real PostgreSQL, on a schema of its
own migrated as the portal's; the ledger is a stand-in answering as LedgerService.List does for one tenant."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest
from ig_common.db import create_pool, prepare_schema
from ig_portal.clients.ledger import LedgerUnavailable
from ig_portal.domain.access import AccessEntry, Action, ledger_subject
from ig_portal.domain.access_log import LedgerRecord
from ig_portal.store import MIGRATIONS
from ig_portal.store.access_feed import AccessFeed
from prometheus_client import REGISTRY

pytestmark = pytest.mark.integration
TS = datetime(2026, 12, 6, tzinfo=UTC)


def record(seq: int, tenant: str, payload_tenant: str | None = None) -> LedgerRecord:
    named = payload_tenant or tenant
    entry = AccessEntry(user="sub", tenant=named, action=Action.READ, object="releases", release="", download_id="",
                        request_sha256="0" * 64, at="2026-12-06T00:00:00.000Z")
    return LedgerRecord(seq=seq, ts=TS, kind="ig.audit.access", subject=ledger_subject(named, ""),
                        payload=entry.payload(), prev_hash="0" * 64, entry_hash=f"{seq:064x}")


class TenantLedger:
    """Each tenant's entries, as List answers them: that tenant's only, from ``from_seq`` on; beta is refused."""

    def __init__(self, entries: dict[str, list[LedgerRecord]]) -> None:
        self.entries = entries
        self.asked: list[tuple[str, int]] = []

    async def entries_from(self, tenant: str, from_seq: int, page_size: int = 1000) -> list[LedgerRecord]:
        self.asked.append((tenant, from_seq))
        if tenant == "beta":
            raise LedgerUnavailable("ledger list failed: PERMISSION_DENIED tenant: ...")
        return [r for r in self.entries.get(tenant, []) if r.seq >= from_seq][:page_size]


@pytest.fixture
async def pool_and_schema(database_url: str) -> AsyncIterator[tuple[asyncpg.Pool, str]]:
    schema = f"portal_f_{uuid.uuid4().hex[:8]}"
    pool = await create_pool(database_url)
    await prepare_schema(pool, schema, MIGRATIONS)
    try:
        yield pool, schema
    finally:
        await pool.execute(f"DROP SCHEMA {schema} CASCADE")
        await pool.close()


async def test_each_tenant_is_read_from_its_own_position_and_a_refused_tenant_stops_no_other(
        pool_and_schema: tuple[asyncpg.Pool, str]) -> None:
    pool, schema = pool_and_schema
    # the single position of before (0005): everything below seq 5 was read already, for every tenant
    await pool.execute(f"UPDATE {schema}.access_log_feed SET next_seq = 5")
    ledger = TenantLedger({"alpha": [record(3, "alpha"), record(7, "alpha"), record(9, "alpha", "gamma")],
                           "gamma": [record(6, "gamma")]})
    feed = AccessFeed(pool, schema, ledger, tenants=("alpha", "beta", "gamma"), interval=1)  # type: ignore[arg-type]
    assert await feed.step() is False
    assert ledger.asked == [("alpha", 5), ("beta", 5), ("gamma", 5)]
    rows = {r["seq"]: r["tenant"] for r in await pool.fetch(f"SELECT seq, tenant FROM {schema}.access_log")}
    assert rows == {7: "alpha", 6: "gamma"}  # seq 3 is below the old position; 9 names gamma, read under alpha
    skipped = await pool.fetch(f"SELECT seq, reason FROM {schema}.access_log_skipped")
    assert [(s["seq"], s["reason"]) for s in skipped] == [(9, "foreign: appended for tenant 'alpha'")]
    positions = {r["tenant"]: r["next_seq"] for r in await pool.fetch(
        f"SELECT tenant, next_seq FROM {schema}.access_log_feed_tenants")}
    assert positions == {"alpha": 10, "gamma": 7}  # beta, refused, keeps none and is asked again next time
    # read up to 4 for every tenant: beta, still at the old position 5, is the one behind
    assert REGISTRY.get_sample_value("ig_portal_access_log_fed_seq") == 4
    ledger.asked.clear()
    await feed.step()
    assert ledger.asked == [("alpha", 10), ("beta", 5), ("gamma", 7)]
