"""``python -m ig_region_test.suite_proof --tenant alpha --out proof.json``: the residency proof of the running
two-region suite (``ig-infra up --regions a,b``), the release flow's region stage runs it beside region-test's.

1. Writes fresh data of the pinned tenant in its home region: a decision at region-a's policy service whose
   resource id is a marker made for this run (region-a's decision log and its event on region-a's Kafka).
2. Collects the tenant's fingerprints: that marker and the decision's id, and the manifest and archive SHA-256 of
   every bundle region-a's evidence service holds for the tenant alone (one also registered for another tenant
   proves nothing).
3. Reads region-b's stores directly (``ig_region_test.suite_residency``) and region-a's as the positive control,
   and writes the JSON proof. Exit 0 only when region-b holds nothing and region-a shows the data.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from ig_infra.components.global_pg import GlobalPostgres
from ig_infra.components.kafka import Kafka
from ig_infra.components.postgres import DB_NAME, Postgres
from ig_infra.paths import Paths
from ig_infra.regions import REGION_A, SecondRegion
from ig_infra.services import SERVICES

from ig_region_test.policyprobe import ask_service, decision_input
from ig_region_test.residency import PinnedTenant
from ig_region_test.suite_residency import RegionStores, TenantFingerprints, probe, proof, saw, write_proof

BLOBS = "evidence-blobs"


async def tenant_bundle_digests(dsn: str, tenant: str) -> list[str]:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        rows = await conn.fetch(
            "SELECT manifest_sha256, archive_sha256 FROM evidence.bundles WHERE tenant = $1 AND archive_sha256 "
            "NOT IN (SELECT archive_sha256 FROM evidence.bundles WHERE tenant <> $1)", tenant)
    finally:
        await conn.close()
    return sorted({digest for row in rows for digest in (row["manifest_sha256"], row["archive_sha256"])})


def write_marker(policy_target: str, tenant: str, home: str, marker: str) -> dict[str, Any]:
    """A decision about the tenant at its home region's policy service, carrying the marker as resource id."""
    payload = decision_input(PinnedTenant(tenant, home, marker), home)
    payload["resource"]["id"] = marker
    return ask_service(policy_target, payload)


@dataclass(frozen=True)
class Suite:
    """Where the running suite's two regions keep the pinned tenant's data, and its home policy service."""

    home_policy: str
    home_evidence_dsn: str  # a superuser's DSN of the database holding the home region's evidence schema
    home: RegionStores
    away: RegionStores


def suite_of(paths: Paths) -> Suite:
    """The layout `ig-infra up --regions a,b` starts (ig_infra.regions)."""
    region_b = SecondRegion.of(paths)
    postgres_a = Postgres(paths)
    postgres_b = next(c for c in region_b.infra() if isinstance(c, Postgres))
    replica = next(c for c in region_b.infra() if isinstance(c, GlobalPostgres))
    policy = next(spec for spec in SERVICES if spec.name == "policy")
    return Suite(f"127.0.0.1:{policy.grpc_port}", postgres_a.dsn(DB_NAME),
                 RegionStores(REGION_A, postgres_a.dsn, Kafka(paths).bootstrap, (paths.component_dir(BLOBS),),
                              databases=(DB_NAME,)),
                 RegionStores(region_b.name, postgres_b.dsn, region_b.client_env()["IG_KAFKA_BOOTSTRAP"],
                              (region_b.paths.component_dir(BLOBS),), global_sql=replica.sql))


async def run(suite: Suite, tenant: str, *, marker_wait: float = 20.0, needles: tuple[str, ...] = (),
              blob_sha256: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Write the marker at home, then probe both regions. ``needles``/``blob_sha256``: more of the tenant's
    fingerprints the caller knows (a test's own release)."""
    since_ms = int(time.time() * 1000) - 1000
    marker = f"residency-probe-{uuid.uuid4().hex[:12]}"
    decision = await asyncio.to_thread(write_marker, suite.home_policy, tenant, suite.home.region, marker)
    bundles = await tenant_bundle_digests(suite.home_evidence_dsn, tenant)
    # The decision's id is in its log row and its event (which carries no resource id).
    decision_id = str(decision["decision_id"])
    fingerprints = TenantFingerprints(tenant, suite.home.region, (marker, decision_id, *needles, *bundles),
                                      blob_sha256 | frozenset(bundles))
    home_stores = dataclasses.replace(suite.home, kafka_since_ms=suite.home.kafka_since_ms or since_ms)
    # The decision log is written in batches and relayed to Kafka after: wait (bounded) until region-a shows both.
    deadline = time.monotonic() + marker_wait
    while True:
        home = await probe(home_stores, fingerprints)
        stores = home["stores"]
        if (saw(stores["postgres"], marker) and saw(stores["kafka"], decision_id)) or time.monotonic() > deadline:
            break
        await asyncio.sleep(1)
    away = await probe(suite.away, fingerprints)
    document = proof(fingerprints, away, home)
    document["markerDecision"] = {k: decision[k] for k in ("decision_id", "result", "rule_id")}
    return document


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ig_region_test.suite_proof", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenant", default="alpha", help="a tenant pinned to region-a (default alpha)")
    parser.add_argument("--out", type=Path, required=True, help="where the JSON proof goes")
    parser.add_argument("--marker-wait", type=float, default=20.0,
                        help="seconds to wait for the marker in region-a's decision log")
    args = parser.parse_args(argv)
    paths = Paths.from_environment()
    region_b = SecondRegion.of(paths)
    if not (region_b.started() and region_b.wanted()):
        print("region-b of the suite is not running here (`ig-infra up --regions a,b`); no proof written",
              file=sys.stderr)
        return 2
    document = asyncio.run(run(suite_of(paths), args.tenant, marker_wait=args.marker_wait))
    write_proof(args.out, document)
    print(f"{document['status']}: region-b held {document['absentElsewhere']['count']} item(s) of "
          f"{args.tenant}, region-a {document['positiveControlAtHome']['count']}; proof {args.out}")
    return 0 if document["status"] == "passed" else 1


if __name__ == "__main__":
    sys.exit(main())
