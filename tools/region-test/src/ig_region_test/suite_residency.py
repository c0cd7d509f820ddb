"""The running suite's residency proof: region-b's own stores, read directly, hold nothing of a region-a-pinned
tenant after that tenant's data was written in region-a.

Read directly, not through a service: every row (as text; bytea as hex) of every table of every database of
region-b's PostgreSQL, and of its replica of the global cluster; every message of every topic of its Kafka from the
beginning; every file of its evidence blob store (bytes and SHA-256). The tenant's data is recognised by its
fingerprints: strings only its data carries (a release name made for the run, the bundle's archive and manifest
SHA-256, its users' e-mail domain) and the SHA-256 of its blobs. The same probe run on region-a's stores is the
positive control: a probe that cannot see the fingerprints where they are written proves nothing where they are not.

The result is a JSON proof (``write_proof``): what was scanned (counts, digests of the result sets) and what was
found, so a reviewer can re-check it rather than trust a boolean.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from ig_common.events.kafka_tls import client_security
from ig_infra.components.kafka import READER_IDENTITY
from ig_infra.kafka_reading import identity_tls

from ig_region_test.kafka_scan import all_partitions, records_to_end
from ig_region_test.residency import digest

PROOF_VERSION = 1


@dataclass(frozen=True)
class TenantFingerprints:
    """What only the pinned tenant's data carries."""

    tenant: str
    home_region: str
    needles: tuple[str, ...]  # searched in rows and messages
    blob_sha256: frozenset[str]  # SHA-256 of the tenant's blobs (the bundle archive, its artifacts)


def _needle_hits(text: bytes, needles: Sequence[str]) -> list[str]:
    return [n for n in needles if n.encode() in text]


def _by_needle(hits: list[str]) -> dict[str, int]:
    """How many hits each needle has (a hit ends with ``:<needle>[,<needle>...]``): the ``found`` list is cut at 50,
    so whether one needle was seen must not depend on how many others were."""
    counted: Counter[str] = Counter()
    for hit in hits:
        counted.update(hit.rsplit(":", 1)[-1].split(","))
    return dict(sorted(counted.items()))


def saw(store: dict[str, Any], needle: str) -> bool:
    """Whether a store's probe saw the needle, as it is or hex-encoded (a bytea column), whatever `found` shows."""
    counted = store["by_needle"]
    return counted.get(needle, 0) + counted.get(needle.encode().hex(), 0) > 0


def _in_rows(needles: Sequence[str]) -> list[str]:
    """The needles as a row's text shows them: as they are, and hex-encoded (a bytea column, e.g. a ledger entry's
    payload, renders as ``\\x<hex>``)."""
    return [*needles, *(n.encode().hex() for n in needles)]


async def rows_in_postgres(dsn_for: Callable[[str], str], needles: Sequence[str],
                           only: Sequence[str] | None = None) -> dict[str, Any]:
    """Every row of every table of every database of a cluster (``dsn_for(database)`` -> a superuser's DSN),
    as text, searched for each needle. ``only``: just these databases (a shared cluster's positive control)."""
    conn = await asyncpg.connect(dsn_for("postgres"), timeout=5)
    try:
        databases = [r["datname"] for r in await conn.fetch(
            "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname")]
    finally:
        await conn.close()
    if only is not None:
        databases = [d for d in databases if d in only]
    hits: list[str] = []
    tables = rows = 0
    for database in databases:
        db = await asyncpg.connect(dsn_for(database), timeout=5)
        try:
            names = [r["name"] for r in await db.fetch(
                "SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) AS name "
                "FROM information_schema.tables WHERE table_type = 'BASE TABLE' "
                "AND table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1")]
            for name in names:
                tables += 1
                rows += int(await db.fetchval(f"SELECT count(*) FROM {name}"))
                found = await db.fetch(f"SELECT t::text AS row FROM {name} t WHERE "
                                       "EXISTS (SELECT 1 FROM unnest($1::text[]) n WHERE strpos(t::text, n) > 0)",
                                       _in_rows(needles))
                hits += [f"{database}:{name}:{','.join(_needle_hits(r['row'].encode(), _in_rows(needles)))}"
                         for r in found]
        finally:
            await db.close()
    return {"databases": databases, "tables_scanned": tables, "rows_scanned": rows, "count": len(hits),
            "found": sorted(hits)[:50], "by_needle": _by_needle(hits), "sha256": digest(hits)}


def rows_in_global_replica(sql: Callable[[str], str], needles: Sequence[str]) -> dict[str, Any]:
    """The same search on the global cluster, through its superuser's psql (it listens on a Unix socket with peer
    authentication only); every table is read whole with query_to_xml, which a hot standby allows."""
    tables = [t for t in sql("SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) "
                              "FROM information_schema.tables WHERE table_type = 'BASE TABLE' AND table_schema "
                              "NOT IN ('pg_catalog', 'information_schema') ORDER BY 1").splitlines() if t]
    hits: list[str] = []
    rows = 0
    for table in tables:
        rows += int(sql(f"SELECT count(*) FROM {table}"))
        for needle in _in_rows(needles):
            literal = needle.replace("'", "''")
            found = int(sql(f"SELECT count(*) FROM {table} t WHERE strpos(t::text, '{literal}') > 0"))
            hits += [f"postgres:{table}:{needle}"] * found
    return {"databases": ["postgres"], "tables_scanned": len(tables), "rows_scanned": rows, "count": len(hits),
            "found": sorted(hits)[:50], "by_needle": _by_needle(hits), "sha256": digest(hits)}


async def messages_on_kafka(bootstrap: str, needles: Sequence[str], *, since_ms: int | None = None,
                            within: float = 30) -> dict[str, Any]:
    """Every message (value, key and headers) of every topic from the beginning (or from ``since_ms``, for a
    long-lived cluster's positive control), searched for each needle, read as the bus's reader identity."""
    security = client_security(identity_tls(READER_IDENTITY)())
    partitions = await all_partitions(bootstrap, security)
    hits: list[str] = []
    read = 0
    async for record in records_to_end(bootstrap, partitions, security, since_ms=since_ms, within=within):
        read += 1
        text = b"|".join([record.key or b"", record.value or b"", *(value for _, value in record.headers)])
        hits += [f"{record.topic}:{record.offset}:{n}" for n in _needle_hits(text, needles)]
    return {"bootstrap": bootstrap, "topics": sorted({tp.topic for tp in partitions}), "partitions": len(partitions),
            "messages_read": read, "from": "beginning" if since_ms is None else f"{since_ms} ms", "count": len(hits),
            "found": sorted(hits)[:50], "by_needle": _by_needle(hits), "sha256": digest(hits)}


def blobs_in(directory: Path, fingerprints: TenantFingerprints) -> dict[str, Any]:
    """Every file of a blob store: its SHA-256 against the tenant's blobs, its bytes and name against the needles."""
    hits: list[str] = []
    files = size = 0
    for root, _, names in os.walk(directory):
        for name in sorted(names):
            path = Path(root, name)
            try:
                data = path.read_bytes()
            except OSError:
                continue
            files += 1
            size += len(data)
            if hashlib.sha256(data).hexdigest() in fingerprints.blob_sha256:
                hits.append(f"{path}:sha256")
            hits += [f"{path}:{n}" for n in _needle_hits(data + str(path).encode(), fingerprints.needles)]
    return {"directory": str(directory), "exists": directory.is_dir(), "files_scanned": files, "bytes_scanned": size,
            "count": len(hits), "found": sorted(hits)[:50], "by_needle": _by_needle(hits), "sha256": digest(hits)}


@dataclass(frozen=True)
class RegionStores:
    """Where one region keeps its data, for reading it directly."""

    region: str
    postgres_dsn_for: Callable[[str], str]
    kafka_bootstrap: str
    blob_dirs: tuple[Path, ...]
    global_sql: Callable[[str], str] | None = None  # its copy of the global cluster (region-b: the replica)
    kafka_since_ms: int | None = None  # a long-lived cluster is read from here, not from the beginning
    databases: tuple[str, ...] | None = None  # None: every database of the cluster


async def probe(stores: RegionStores, fingerprints: TenantFingerprints) -> dict[str, Any]:
    """Every store of one region searched for the tenant's fingerprints; ``count`` per store."""
    found: dict[str, Any] = {
        "postgres": await rows_in_postgres(stores.postgres_dsn_for, fingerprints.needles, stores.databases),
        "kafka": await messages_on_kafka(stores.kafka_bootstrap, fingerprints.needles,
                                         since_ms=stores.kafka_since_ms),
        "blobs": [await asyncio.to_thread(blobs_in, d, fingerprints) for d in stores.blob_dirs],
    }
    if stores.global_sql is not None:
        found["global_postgres"] = await asyncio.to_thread(rows_in_global_replica, stores.global_sql,
                                                           fingerprints.needles)
    return {"region": stores.region, "stores": found, "count": total(found)}


def total(found: dict[str, Any]) -> int:
    return sum(int(entry["count"]) for value in found.values()
               for entry in (value if isinstance(value, list) else [value]))


def proof(fingerprints: TenantFingerprints, away: dict[str, Any], home: dict[str, Any]) -> dict[str, Any]:
    """Passed only when the other region holds nothing and the home region's positive control saw the data."""
    passed = away["count"] == 0 and home["count"] > 0
    return {"proofVersion": PROOF_VERSION, "kind": "residency-proof/suite-stores",
            "at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "tenant": fingerprints.tenant, "homeRegion": fingerprints.home_region,
            "fingerprints": {"needles": list(fingerprints.needles), "blobSha256": sorted(fingerprints.blob_sha256)},
            "status": "passed" if passed else "failed",
            "absentElsewhere": away, "positiveControlAtHome": home}


def write_proof(path: Path, document: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    return path


def sha256_files(paths: Iterable[Path]) -> frozenset[str]:
    return frozenset(hashlib.sha256(p.read_bytes()).hexdigest() for p in paths if p.is_file())
