"""Failover and failback of the two-region suite (issue #23, item 4), on two regions started the way
`ig-infra up --regions a,b` starts them, in a private run dir on free ports (as e2e/test_two_regions.py does).

region-a here is the shared infrastructure (left alone: other tests use it) plus what this module starts of its
own: the global primary and a policy service with IG_REGION=region-a. The partition freezes region-a's own
processes (that policy service) and fences the global primary; region-b is complete (PostgreSQL, Kafka, OPA,
five services, the global replica). A component that cannot start fails the test (InfraError), it never skips.

The limits are the CI profile's (RTO <= 60 s); `make bench-region` runs this module with IG_FAILOVER_MAX_RTO=10,
the goal, and IG_FAILOVER_REPORT under artifacts/bench.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ig_infra.cli import start_components, start_services
from ig_infra.components.global_pg import GlobalPostgres
from ig_infra.components.identities import Identities
from ig_infra.freeze import state_of, thaw
from ig_infra.paths import Paths
from ig_infra.process import InfraError, free_port, free_ports, read_pid
from ig_infra.pytest_plugin import Infra
from ig_infra.regions import REGION_A, REGION_B, SecondRegion
from ig_infra.release_key import release_signing_key
from ig_infra.services import SERVICES, ServiceProcess
from ig_region_test.suite_failback import failback
from ig_region_test.suite_failover import Limits, SuiteRegions, failover, finish, load_frozen
from ig_region_test.suite_takeover import GLOBAL_TENANT, ensure_release
from ig_region_test.timeline import Timeline

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services" / "audit-portal" / "testing"))
from portal_stack import write_inputs

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
MAX_RTO = float(os.environ.get("IG_FAILOVER_MAX_RTO", "60"))  # the CI profile's limit; the goal is 10 s
REPORT = Path(os.environ.get("IG_FAILOVER_REPORT", REPO / "artifacts" / "failover" / "suite-failover-test.json"))
RELEASE = "v1.2.1"


def _running(service: ServiceProcess) -> dict[str, int]:
    pid = read_pid(service.pid_file)
    assert pid is not None, f"region-a's {service.spec.name} is not running"
    return {service.spec.name: pid}


@dataclasses.dataclass
class TwoRegions:
    suite: SuiteRegions
    region_b: SecondRegion
    policy_a: ServiceProcess


@pytest.fixture(scope="module")
def two_regions(infra: Infra, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoRegions]:
    # Not under pytest's tmp_path: PostgreSQL runs as `postgres`, which cannot traverse root's 0700 /tmp/pytest-of-*.
    issuer = infra.oidc_issuer()  # the shared Dex (started when down): region-b's portal signs users in there
    root = Path(f"/var/tmp/ig-suite-failover-test-{free_port()}")
    root.mkdir(mode=0o755)
    region = SecondRegion(REGION_B, Paths(cache=infra.paths.cache, run=root / REGION_B), free_ports())
    primary, components = region.global_primary(), region.infra()
    replica = components[-1]
    assert isinstance(replica, GlobalPostgres)
    port = free_ports()
    spec = next(s for s in SERVICES if s.name == "policy")
    spec = dataclasses.replace(spec, http_port=port(spec.http_port), grpc_port=port(50051),
                               extra_ports={k: port(v) for k, v in spec.extra_ports.items()},
                               extra_env={"IG_REGION": REGION_A, **infra.database_env("policy", database_url)})
    paths_a = Paths(cache=infra.paths.cache, run=root / REGION_A)
    identities_a = Identities(paths_a)
    policy_a = ServiceProcess(spec, paths_a)
    suite = SuiteRegions(
        primary=primary, replica=replica, partitioned=lambda: _running(policy_a),
        policy_b=f"127.0.0.1:{region.service('policy').spec.grpc_port}",
        portal_b=f"http://127.0.0.1:{region.port(8080)}",
        evidence_b=f"127.0.0.1:{region.service('evidence').spec.grpc_port}",
        issuer=issuer, signing_key_b=release_signing_key(region.paths.run),
        state_dir=root / "failover", release=RELEASE)
    try:
        start_components([primary])
        start_components(components, prefix="region-b ")
        start_services(region.services(), [*region.shared(), *components], prefix="region-b ", side_by_side=True)
        identities_a.start()
        policy_a.start([identities_a, infra.kafka, infra.opa])
        yield TwoRegions(suite, region, policy_a)
    finally:
        thaw(load_frozen(suite))
        policy_a.stop()
        for service in reversed(region.services()):
            service.stop()
        for component in reversed(components):
            component.stop()
        primary.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def failed_over(two_regions: TwoRegions, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """beta's release registered in region-b (the failover's precondition), then the failover; while region-a is
    still partitioned: the state of its frozen process and a write tried on its fenced global primary."""
    suite = two_regions.suite
    inputs = write_inputs(tmp_path_factory.mktemp("beta-inputs"))
    precondition = ensure_release(suite.evidence_b, version=RELEASE, tenant=GLOBAL_TENANT, inputs=inputs,
                                  signing_key=suite.signing_key_b, out=suite.state_dir / "bundle-beta")
    timeline = Timeline()
    report = asyncio.run(failover(suite, Limits(max_rto=MAX_RTO, time_limit=max(MAX_RTO, 60)), timeline))
    document = finish(report, timeline, REPORT)
    pid = read_pid(two_regions.policy_a.pid_file)
    assert pid is not None
    marker = f"during-partition-{uuid.uuid4().hex[:8]}"
    try:
        # Not waiting for region-b: an old primary left unfenced would accept this write locally (a synchronous
        # commit would instead wait for ever for a replica that is gone); a fenced one refuses it.
        suite.primary.sql(f"SET synchronous_commit = local; CREATE TABLE {marker.replace('-', '_')} (x int)")
        direct_write: str | None = None
    except InfraError as error:
        direct_write = str(error)
    return {**document, "precondition": precondition, "policy_a_state": state_of(pid), "direct_write": direct_write,
            "status_lines": {REGION_A: suite.primary.address(), REGION_B: suite.replica.address()}}


@pytest.fixture(scope="module")
def failed_back(two_regions: TwoRegions, failed_over: dict[str, Any]) -> dict[str, Any]:
    timeline = Timeline()
    report = asyncio.run(failback(two_regions.suite, timeline))
    document = finish(report, timeline, REPORT.with_name(REPORT.stem.replace("failover", "failback") + ".json"))
    suite = two_regions.suite
    token = f"after-failback-{uuid.uuid4().hex[:8]}"
    suite.primary.sql(f"CREATE TABLE IF NOT EXISTS failback_check (token text); "
                      f"INSERT INTO failback_check VALUES ('{token}')")
    try:
        replica_read = suite.replica.sql(f"SELECT count(*) FROM failback_check WHERE token = '{token}'")
    except InfraError as error:
        replica_read = f"not readable: {error}"
    return {**document, "token": token, "replica_read": replica_read,
            "status_lines": {REGION_A: suite.primary.address(), REGION_B: suite.replica.address()}}


def _check(document: dict[str, Any], start: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [c for c in document["checks"] if c["name"].startswith(start)]
    assert len(found) == 1, [c["name"] for c in document["checks"]]
    return found[0]


def test_failover_loses_no_acknowledged_write_rpo_0(failed_over: dict[str, Any]) -> None:
    assert failed_over["acknowledged_before_cut"] > 0, failed_over["acknowledged_before_cut"]
    assert failed_over["rpo_lost_writes"] == 0, _check(failed_over, "rpo")
    assert _check(failed_over, "rpo")["passed"]


def test_failover_rto_is_measured_and_within_the_limit(failed_over: dict[str, Any]) -> None:
    rto = failed_over["rto_seconds"]
    assert rto is not None and 0 < rto <= MAX_RTO, json.dumps(failed_over["timeline"], indent=1)[:4000]
    assert failed_over["acknowledged_by_new_primary"] > 0


def test_the_fenced_old_primary_refuses_writes_during_the_partition(failed_over: dict[str, Any]) -> None:
    # The writer's own role, during the drill, and the superuser afterwards, while region-a is still cut off.
    fence = failed_over["fence"]
    assert fence["write_refused"] and "read-only transaction" in str(fence["error"]), fence
    assert failed_over["direct_write"] is not None and "read-only transaction" in failed_over["direct_write"], \
        failed_over["direct_write"]
    assert failed_over["global_roles"] == {REGION_A: "fenced", REGION_B: "primary"}, failed_over["global_roles"]


def test_status_shows_which_global_cluster_is_primary(failed_over: dict[str, Any], failed_back: dict[str, Any]) -> None:
    # What `ig-infra status` prints for each global cluster (GlobalPostgres.address), during and after.
    during, after = failed_over["status_lines"], failed_back["status_lines"]
    assert "(now: FENCED;" in during[REGION_A] and "(now: PRIMARY;" in during[REGION_B], during
    assert "(now: PRIMARY;" in after[REGION_A] and "(now: REPLICA;" in after[REGION_B], after


def test_region_a_processes_are_frozen_during_the_partition(failed_over: dict[str, Any]) -> None:
    assert failed_over["policy_a_state"] == "T", failed_over["policy_a_state"]
    assert failed_over["partition"]["processes"] == ["policy"], failed_over["partition"]


def test_region_b_portal_serves_the_global_tenant_release_and_refuses_the_pinned_tenant(
        failed_over: dict[str, Any]) -> None:
    served = _check(failed_over, f"region-b portal serves {GLOBAL_TENANT}")
    assert served["passed"] and RELEASE in served["releases"] and served["artifacts"] > 0, served
    refused = _check(failed_over, "region-b portal refuses alpha")
    assert refused["status"] == 403 and "pinned to region-a" in refused["detail"], refused
    assert "residency wins over availability" in failed_over["residency"]


def test_region_b_decide_answers_for_the_global_tenant_and_denies_the_pinned_one(
        failed_over: dict[str, Any]) -> None:
    beta = _check(failed_over, f"region-b Decide answers for {GLOBAL_TENANT}")
    assert beta["passed"] and beta["answer"]["decision_id"].startswith("dec_"), beta
    alpha = _check(failed_over, "region-b Decide denies alpha")
    assert alpha["answer"]["result"] == "DENY" and alpha["answer"]["rule_id"] == "ig.residency.cross_region", alpha


def test_failback_restores_replication_with_region_a_primary_again(failed_back: dict[str, Any]) -> None:
    assert failed_back["passed"], json.dumps(failed_back["checks"], indent=1)
    assert failed_back["replica_read"] == "1", failed_back  # remote_apply: read at once on region-b
    assert failed_back["global_roles"] == {REGION_A: "primary", REGION_B: "replica"}
    assert failed_back["region_a_rejoined"]["method"] in ("pg_rewind", "pg_basebackup"), failed_back
