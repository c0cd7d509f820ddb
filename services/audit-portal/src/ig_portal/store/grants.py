"""Access grants in the portal schema; every replica reads the same rows."""

from __future__ import annotations

import secrets
from datetime import datetime

import asyncpg

from ig_portal.domain.grants import Grant


def _grant(row: asyncpg.Record) -> Grant:
    return Grant(row["id"], row["tenant"], row["release"], row["auditor"], row["valid_from"], row["valid_until"],
                 row["nda_text"], row["granted_by"], row["revoked_at"] is not None, row["nda_accepted_at"])


class GrantStore:
    def __init__(self, pool: asyncpg.Pool, schema: str) -> None:
        self.pool = pool
        self.schema = schema

    async def of_tenant(self, tenant: str) -> list[Grant]:
        rows = await self.pool.fetch(f"SELECT * FROM {self.schema}.access_grants WHERE tenant = $1 "
                                     "ORDER BY granted_at, id", tenant)
        return [_grant(r) for r in rows]

    async def create(self, *, tenant: str, release: str, auditor: str, valid_from: datetime, valid_until: datetime,
                     nda_text: str, granted_by: str) -> Grant:
        row = await self.pool.fetchrow(
            f"""INSERT INTO {self.schema}.access_grants (id, tenant, release, auditor, valid_from, valid_until,
                    nda_text, granted_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *""",
            f"g_{secrets.token_hex(12)}", tenant, release, auditor, valid_from, valid_until, nda_text, granted_by)
        assert row is not None  # INSERT … RETURNING returns the row or raises
        return _grant(row)

    async def revoke(self, tenant: str, grant_id: str) -> bool:
        """False when the tenant has no such grant (another tenant's is not there either)."""
        done = await self.pool.fetchval(
            f"""UPDATE {self.schema}.access_grants SET revoked_at = coalesce(revoked_at, now())
                WHERE tenant = $1 AND id = $2 RETURNING true""", tenant, grant_id)
        return bool(done)

    async def accept_nda(self, tenant: str, grant_id: str, auditor: str, address: str) -> datetime | None:
        """Records the first acceptance; None when it was accepted already (or is not this auditor's grant)."""
        value = await self.pool.fetchval(
            f"""UPDATE {self.schema}.access_grants SET nda_accepted_at = now(), nda_accepted_from = $4
                WHERE tenant = $1 AND id = $2 AND auditor = $3 AND nda_text <> '' AND nda_accepted_at IS NULL
                  AND revoked_at IS NULL RETURNING nda_accepted_at""", tenant, grant_id, auditor, address)
        return value if isinstance(value, datetime) else None

    async def undo_accept(self, tenant: str, grant_id: str) -> None:
        """An acceptance the ledger did not record is not one: the auditor is asked again."""
        await self.pool.execute(f"UPDATE {self.schema}.access_grants SET nda_accepted_at = NULL, "
                                "nda_accepted_from = NULL WHERE tenant = $1 AND id = $2", tenant, grant_id)

    async def delete(self, tenant: str, grant_id: str) -> None:
        await self.pool.execute(f"DELETE FROM {self.schema}.access_grants WHERE tenant = $1 AND id = $2", tenant,
                                grant_id)
