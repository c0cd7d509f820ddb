"""Registered bundles and their artifacts (metadata; bytes are in the blob store)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from ig.events.v1 import events_pb2
from ig_common.events.outbox import enqueue

from ig_evidence.domain.manifest import ArtifactRecord
from ig_evidence.events import bundle_registered


@dataclass(frozen=True)
class BundleRow:
    manifest_sha256: str
    release: str
    tenant: str
    complete: bool
    missing: list[str]
    contract_version: str
    ledger_seq: int
    # The pinned signer it was verified against (empty for bundles registered before signers were pinned).
    signer_name: str = ""
    signer_key_id: str = ""


@dataclass(frozen=True)
class ArtifactRow:
    id: str
    release: str
    tenant: str
    record: ArtifactRecord


def artifact_id(tenant: str, manifest_sha256: str, name: str) -> str:
    """Tenant-scoped: two tenants registering the same bundle get different ids for the same file."""
    return hashlib.sha256(f"{tenant}/{manifest_sha256}/{name}".encode()).hexdigest()[:32]


def _bundle(row: asyncpg.Record) -> BundleRow:
    return BundleRow(row["manifest_sha256"], row["release"], row["tenant"], row["complete"], list(row["missing"]),
                     row["contract_version"], row["ledger_seq"], row["signer_name"], row["signer_key_id"])


def _artifact(row: asyncpg.Record) -> ArtifactRow:
    return ArtifactRow(row["id"], row["release"], row["tenant"],
                       ArtifactRecord(row["name"], row["type"], row["media_type"], row["size"], row["sha256"]))


class BundleStore:
    def __init__(self, pool: asyncpg.Pool, schema: str) -> None:
        self._pool = pool
        self._schema = schema

    async def find(self, tenant: str, manifest_sha256: str) -> BundleRow | None:
        row = await self._pool.fetchrow(f"SELECT * FROM {self._schema}.bundles WHERE tenant = $1 "
                                        "AND manifest_sha256 = $2", tenant, manifest_sha256)
        return _bundle(row) if row else None

    async def record(self, bundle: BundleRow, archive_sha256: str, artifacts: list[ArtifactRecord]) -> bool:
        """Insert bundle + artifacts + event in one transaction; False if this tenant already registered it."""
        s = self._schema
        async with self._pool.acquire() as conn, conn.transaction():
            inserted = await conn.fetchval(
                f"""INSERT INTO {s}.bundles (manifest_sha256, release, tenant, complete, missing, contract_version,
                        archive_sha256, ledger_seq, signer_name, signer_key_id)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                    ON CONFLICT (tenant, manifest_sha256) DO NOTHING RETURNING true""",
                bundle.manifest_sha256, bundle.release, bundle.tenant, bundle.complete, bundle.missing,
                bundle.contract_version, archive_sha256, bundle.ledger_seq, bundle.signer_name, bundle.signer_key_id)
            if not inserted:
                return False
            await conn.executemany(
                f"""INSERT INTO {s}.artifacts (id, manifest_sha256, release, tenant, name, type, media_type, size,
                        sha256) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
                [(artifact_id(bundle.tenant, bundle.manifest_sha256, a.name), bundle.manifest_sha256, bundle.release,
                  bundle.tenant, a.name, a.type, a.media_type, a.size, a.sha256) for a in artifacts])
            await enqueue(conn, s, bundle_registered(events_pb2.BundleRegistered(
                release=bundle.release, tenant=bundle.tenant, manifest_sha256=bundle.manifest_sha256,
                ledger_seq=bundle.ledger_seq, complete=bundle.complete)))
        return True

    async def latest_per_release(self, tenant: str) -> list[BundleRow]:
        rows = await self._pool.fetch(
            f"""SELECT DISTINCT ON (tenant, release) * FROM {self._schema}.bundles
                WHERE $1 = '' OR tenant = $1 ORDER BY tenant, release, registered_at DESC""", tenant)
        return [_bundle(r) for r in rows]

    async def latest(self, release: str, tenant: str | None) -> BundleRow | None:
        row = await self._pool.fetchrow(
            f"""SELECT * FROM {self._schema}.bundles WHERE release = $1 AND ($2::text IS NULL OR tenant = $2)
                ORDER BY registered_at DESC LIMIT 1""", release, tenant)
        return _bundle(row) if row else None

    async def history(self, release: str, tenant: str) -> list[tuple[BundleRow, datetime]]:
        """Every bundle registered for ``release`` of ``tenant`` with when, oldest first (its amendments)."""
        rows = await self._pool.fetch(
            f"""SELECT * FROM {self._schema}.bundles WHERE release = $1 AND tenant = $2
                ORDER BY registered_at, ledger_seq""", release, tenant)
        return [(_bundle(r), r["registered_at"]) for r in rows]

    async def archive_of(self, bundle: BundleRow) -> str | None:
        """The content address of the bundle tarball a manifest came in."""
        value = await self._pool.fetchval(f"SELECT archive_sha256 FROM {self._schema}.bundles "
                                          "WHERE tenant = $1 AND manifest_sha256 = $2", bundle.tenant,
                                          bundle.manifest_sha256)
        return str(value) if value is not None else None

    async def artifacts(self, bundle: BundleRow) -> list[ArtifactRow]:
        rows = await self._pool.fetch(f"SELECT * FROM {self._schema}.artifacts WHERE tenant = $1 "
                                      "AND manifest_sha256 = $2 ORDER BY name", bundle.tenant, bundle.manifest_sha256)
        return [_artifact(r) for r in rows]

    async def artifact(self, artifact_id_: str) -> ArtifactRow | None:
        row = await self._pool.fetchrow(f"SELECT * FROM {self._schema}.artifacts WHERE id = $1", artifact_id_)
        return _artifact(row) if row else None
