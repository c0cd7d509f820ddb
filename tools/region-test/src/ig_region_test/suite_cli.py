"""``ig-infra failover`` / ``ig-infra failback`` (`make failover` / `make failback`) on the running two-region suite.

    failover [--max-rto 10] [--time-limit 60] [--out FILE]
    failback [--out FILE]

Exit status: 0 every check held; 1 a check failed (the report says which); 2 usage error; 3 the suite is not
in a state to do it (region-b not running, the global pair not as expected, beta's release cannot be made).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import grpc
from ig_infra.components.dex import Dex
from ig_infra.components.global_pg import GlobalPostgres
from ig_infra.components.kafka import Kafka
from ig_infra.components.opa import Opa
from ig_infra.components.postgres import Postgres
from ig_infra.paths import Paths
from ig_infra.pki import identities_directory
from ig_infra.process import InfraError, read_pid
from ig_infra.regions import SecondRegion
from ig_infra.release_key import release_signing_key
from ig_infra.services import SERVICES, ServiceProcess
from ig_infra.suite_network import load as load_network

from ig_region_test.measure import ThresholdError, parse_seconds
from ig_region_test.suite_failback import failback
from ig_region_test.suite_failover import Limits, Report, SuiteRegions, check_pair, failover, finish
from ig_region_test.suite_takeover import GLOBAL_TENANT, ensure_release
from ig_region_test.timeline import Timeline


def region_a_processes(paths: Paths) -> dict[str, int]:
    """What the partition freezes of `make up`'s region-a: its PostgreSQL, Kafka, OPA and five services."""
    found: dict[str, int] = {}
    postmaster = Postgres(paths).data / "postmaster.pid"
    if postmaster.exists():
        found["postgres"] = int(postmaster.read_text().split()[0])
    for name, pid_file in (("kafka", Kafka(paths).pid_file), ("opa", Opa(paths).pid_file),
                           *((s.name, ServiceProcess(s, paths).pid_file) for s in SERVICES)):
        pid = read_pid(pid_file)
        if pid is not None:
            found[name] = pid
    return found


def running_suite(paths: Paths) -> SuiteRegions:
    """`make up`'s two regions (ig_infra.regions)."""
    region_b = SecondRegion.of(paths)
    env_b = region_b.client_env()
    return SuiteRegions(
        primary=region_b.global_primary(),
        replica=next(c for c in region_b.infra() if isinstance(c, GlobalPostgres)),
        partitioned=lambda: region_a_processes(paths),
        policy_b=env_b["IG_POLICY_GRPC"], portal_b=env_b["IG_PORTAL_URL"], evidence_b=env_b["IG_EVIDENCE_GRPC"],
        issuer=Dex(paths).issuer, signing_key_b=release_signing_key(region_b.paths.run),
        state_dir=paths.run / "failover", network=load_network(paths.run))


def print_report(document: dict[str, Any], out: Path) -> None:
    for check in document["checks"]:
        print(f"  [{'ok' if check['passed'] else 'FAILED'}] {check['name']}")
    print(f"report: {out}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ig-infra failover|failback", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["failover", "failback"])
    parser.add_argument("--max-rto", default="10", help="failover: the RTO goal in seconds (default 10)")
    parser.add_argument("--time-limit", default="60", help="failover: give up on the RTO after this long")
    parser.add_argument("--out", type=Path, default=None, help="the JSON report (default artifacts/failover/)")
    args = parser.parse_args(argv)
    try:
        limits = Limits(max_rto=parse_seconds("--max-rto", args.max_rto),
                        time_limit=parse_seconds("--time-limit", args.time_limit))
    except ThresholdError as error:
        parser.error(str(error))
    paths = Paths.from_environment()
    # The clients here (ig-evidence as release, Decide as region-test) act as the suite's own identities.
    os.environ.setdefault("IG_IDENTITIES", str(identities_directory(paths.run)))
    artifacts = Path(os.environ.get("ARTIFACTS", paths.repo / "artifacts"))
    out = args.out or artifacts / "failover" / f"suite-{args.action}.json"
    if not SecondRegion.of(paths).started():
        print("region-b of the suite is not running here (`make up` starts both regions)", file=sys.stderr)
        return 3
    suite = running_suite(paths)
    timeline = Timeline()
    try:
        if args.action == "failover":
            print(suite.partition, flush=True)
            check_pair(suite)
            # beta's release in region-b gathers nothing of the release flow: that flow released alpha's, and its
            # evidence names alpha's data (its decisions, the residency proof's fingerprints of alpha's bundles),
            # which must never reach region-b. Built from no inputs, the bundle holds only what `ig-evidence build`
            # generates itself (SBOM, provenance) and says it is incomplete.
            inputs = suite.state_dir / f"inputs-{GLOBAL_TENANT}"
            shutil.rmtree(inputs, ignore_errors=True)
            inputs.mkdir(parents=True)
            done = ensure_release(suite.evidence_b, version=suite.release, tenant=GLOBAL_TENANT, inputs=inputs,
                                  signing_key=suite.signing_key_b, out=suite.state_dir / f"bundle-{GLOBAL_TENANT}")
            print(f"precondition: {done}", flush=True)
            report: Report = asyncio.run(failover(suite, limits, timeline))
            report.document["precondition"] = done
        else:
            report = asyncio.run(failback(suite, timeline))
    except (InfraError, RuntimeError, FileNotFoundError, grpc.RpcError) as error:
        print(f"ig-infra {args.action}: {error}", file=sys.stderr)
        return 3
    document = finish(report, timeline, out)
    if args.action == "failover":
        print(f"RTO {document['rto_seconds']} s (goal {limits.max_rto:g} s), RPO {document['rpo_lost_writes']} "
              f"acknowledged writes lost of {document['acknowledged_before_cut']}; fence: "
              f"{document['fence']['error']}")
        print(document["residency"])
    else:
        print(json.dumps({k: document[k] for k in ("region_a_rejoined", "switchover", "global_roles")}, indent=1))
    print_report(document, out)
    return 0 if document["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
