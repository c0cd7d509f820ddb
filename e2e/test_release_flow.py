"""The release flow and the release job end to end (issue 10), producing once.

`ig-release run --profile ci` — the same code as `make up`'s demo run, shorter — against real services (policy,
evidence, portal, burn and migration as processes on free ports; the shared PostgreSQL, Kafka, OPA, Dex and
Prometheus; region-test in network namespaces), ending with the auditor's offline verification of the bundle
downloaded from the portal, by `ig-evidence verify` and by the real cosign. The burn stage drives the suite's own burn
service (demo profile: windows / 86400) through the shared Prometheus: the test reads the incident from that
service's database and from ig.incidents.v1, and asks Prometheus itself whether BurnThrottleEngaged fired for the
suite's SLO, from the suite's burn service's metrics, and resolved. The migration goes through MigrationService
(whose SLO-headroom gate asks that burn service): the test asks the service for the run id the flow recorded and
reads the run's events on ig.migration.v1 itself.

Then the release job (`ig-release job`, what .github/workflows/release.yml runs), for real: it starts policy, evidence
and portal itself (--start-suite) on the shared PostgreSQL (a database of its own), Kafka and Dex and a private OPA,
takes the flow's evidence plus a collected JUnit report as other jobs' output, builds, signs, verifies (ig-evidence +
the real cosign), registers, lets the auditor verify through the portal, and publishes to a local folder; a later
release signs with a given key and diffs its schema against the published one, and a release missing required
evidence fails the job and publishes nothing. The job's producing stages are the flow's own (the same Stage objects,
tools/release-flow/tests/test_release_workflow.py): running them a second time here would add minutes and prove
nothing more."""


from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ig_release.auditor import retrieve_and_verify
from ig_release.context import StageFailed
from ig_release.stages.evidence import cosign_verify
from ig_release.suite import local_suite

pytestmark = pytest.mark.e2e
RELEASE = "v1.2.1"
REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SECOND, INCOMPLETE = "v1.2.2", "v1.2.3"
# The release's images, as `make k8s-up` names them (ig-k8s images --subjects): the flow attests them in the
# provenance, and the auditor's download still attests them. Which digests does not matter here; the real-node
# package (tools/k8s/tests/real/test_real_image_provenance.py) ties them to what the kubelets run.
IMAGES = [{"name": f"localhost/ig/{name}:dev", "digest": {"sha256": hashlib.sha256(name.encode()).hexdigest()}}
          for name in ("policy", "evidence")]
JUNIT = b'<?xml version="1.0"?><testsuites><testsuite name="make test" tests="1"><testcase name="t"/></testsuite>' \
        b"</testsuites>\n"


@pytest.fixture(scope="module")
def suite(infra: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    from ig_policy.testing import opa_server

    # A database of its own, as `make up`'s suite has: the session's is shared with tests that leave state behind
    # in the services' schemas (e2e/test_burn_resilience.py pins experiments.paused, which the burn stage's throttle
    # then cannot flip). And a private OPA (same binary, same policies): the shared one serves every other test.
    database = infra.new_database("ig_release_flow")
    try:
        with opa_server() as opa:
            base = {**infra.env(database), **opa.env(), "IG_OIDC_ISSUER": infra.oidc_issuer()}
            with local_suite(base, tmp_path_factory.mktemp("suite")) as env:
                yield env
    finally:
        infra.drop_database(database)


@pytest.fixture(scope="module")
def flow(suite: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    artifacts = tmp_path_factory.mktemp("release")
    images = artifacts / "image-subjects.json"
    images.write_text(json.dumps(IMAGES))
    started = time.time()
    done = subprocess.run([str(Path(sys.executable).parent / "ig-release"), "run", "--version", RELEASE, "--profile",
                           "ci", "--artifacts", str(artifacts), "--image-subjects", str(images)],
                          env={**os.environ, **suite}, cwd=REPO,
                          capture_output=True, text=True, timeout=900, check=False)
    root = artifacts / RELEASE
    record = json.loads((root / "release-flow.json").read_text()) if (root / "release-flow.json").exists() else {}
    return {"done": done, "root": root, "record": record, "started": started}


def test_every_stage_passes_and_the_summary_says_where_things_are(flow: dict[str, Any]) -> None:
    done = flow["done"]
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    stages = [(s["stage"], s["state"]) for s in flow["record"]["stages"]]  # in the order they finished
    assert sorted(stages) == sorted((name, "passed") for name in ("policy", "burn", "migration", "region", "failover",
                                                                   "evidence", "portal"))
    finished = [name for name, _ in stages]
    assert finished[-2:] == ["evidence", "portal"] and finished.index("burn") < finished.index("migration")
    # the suite's failover acts on `make up`'s suite only, never on the one this test started
    failover = next(s for s in flow["record"]["stages"] if s["stage"] == "failover")
    assert failover["detail"].endswith("not `make up`'s: no suite failover")
    assert "auditor@alpha.example / alpha-auditor-pw" in done.stdout
    assert "flow completed" in done.stdout and "audit portal" in done.stdout


def test_the_stages_leave_real_evidence_of_what_happened(flow: dict[str, Any]) -> None:
    root = flow["root"]
    traffic = json.loads((root / "policy" / "gateway-traffic.json").read_text())
    assert set(traffic["by_status"]) == {"200", "401", "403"}
    assert traffic["decision_log_rows"] == traffic["requests"]
    burst = json.loads((root / "burn" / "burn-error-burst.json").read_text())["timeline"]
    events = [e["event"] for e in burst]
    assert events.index("throttle flags flipped, incident opened") < events.index("rolled back, incident resolved")
    flipped = next(e for e in burst if e["event"] == "throttle flags flipped, incident opened")
    # The scaled windows are said on every report and page the burn evidence holds.
    assert json.loads((root / "burn" / "burn-error-burst.json").read_text())["window_scale"] == 86400
    assert json.loads((root / "burn" / "slo-report.json").read_text())["windowScale"] == 86400
    assert "Simulation: every window divided by 86400" in (root / "burn" / "burn-dashboard.html").read_text()
    assert flipped["flags"]["subs.optimizedBuffer"] is False and flipped["incident"]["status"] == "open"
    report = json.loads((root / "migration" / "add-asset-index-v3.json").read_text())
    assert report["aca"]["score"] >= 0.9 and report["shadow_read"]["mismatches"] == 0
    rehearsal = json.loads((root / "migration" / "backout-rehearsal.json").read_text())
    assert rehearsal["validated"] is True
    # Something to undo: green lost or garbled acknowledged writes of batch 1, the view showed it, the partial
    # backout restored them, and the writer's own record finds no acknowledged write lost afterwards.
    diverged = rehearsal["divergence"]["deleted_on_green"] + rehearsal["divergence"]["garbled_on_green"]
    assert diverged and rehearsal["acknowledged_writes"]["lost_on_diverged_rows_before_rehearsal"]
    assert rehearsal["per_batch"][0]["restored_rows"] > 0
    assert rehearsal["acknowledged_writes"]["rows_in_record"] > 0
    assert rehearsal["acknowledged_writes"]["lost_after_rehearsal"] == []
    rtbf = json.loads((root / "migration" / "rtbf-log.json").read_text())
    assert sum(rtbf["rows_before"].values()) > 0 and sum(rtbf["rows_after"].values()) == 0
    region = json.loads((root / "region" / "multi-region" / "multi-region-results.json").read_text())
    assert region["phases"][0]["rpo_lost_writes"] == 0
    manifest = json.loads((root / "evidence" / "bundle" / "manifest.json").read_text())
    assert manifest["complete"] is True and manifest["release"] == RELEASE
    assert {"sbom", "provenance", "schema-diff", "decision-coverage", "multi-region", "aca-report"} <= {
        a["type"] for a in manifest["artifacts"]}


async def test_the_suites_own_burn_service_opened_the_incident_and_prometheus_fired_and_resolved_the_alert(
        flow: dict[str, Any], suite: dict[str, str]) -> None:
    """Read from the suite's burn service (its own database, its events on ig.incidents.v1) and from the shared
    Prometheus, not from the flow's report: a stage that burned a private burn service (its own database, its own
    Prometheus) leaves no incident in the suite's database, and no BurnThrottleEngaged or ig_burn_throttled series
    of the suite's SLO from the suite's burn job in the shared Prometheus."""
    import asyncpg
    import httpx
    from ig.events.v1 import events_pb2
    from ig_burn.devtools.demo import DemoNames
    from ig_common.events.envelope import from_kafka_record
    from ig_common.events.topics import INCIDENTS
    from ig_infra.kafka_reading import consumer_at, records_until_now

    assert flow["done"].returncode == 0, "the flow failed; see the first test"
    names = DemoNames(suite["IG_BURN_DEMO_ID"])
    report = json.loads((flow["root"] / "burn" / "burn-error-burst.json").read_text())
    incident = report["incident"]["id"]
    assert report["burn_service"]["api"] == suite["IG_BURN_API"] and report["slo"] == names.slo

    # The suite's burn service opened the incident (its own schema in the suite's database) and resolved it.
    conn = await asyncpg.connect(suite["IG_DATABASE_URL"])
    try:
        rows = await conn.fetch("SELECT incident_id, status, opened_at, resolved_at FROM burn.incidents "
                                "WHERE slo = $1", names.slo)
    finally:
        await conn.close()
    assert [(r["incident_id"], r["status"]) for r in rows] == [(incident, "resolved")]
    assert rows[0]["opened_at"].timestamp() >= flow["started"] - 1 and rows[0]["resolved_at"] > rows[0]["opened_at"]

    # ... and published both on ig.incidents.v1.
    seen: list[tuple[str, str]] = []
    async with consumer_at(suite["IG_KAFKA_BOOTSTRAP"], INCIDENTS, since=flow["started"]) as consumer:
        async for record in records_until_now(consumer):
            event = from_kafka_record(record.topic, record.key, record.value, list(record.headers))
            payload = event.parse(events_pb2.Incident())
            if payload.slo == names.slo:
                seen.append((event.type, payload.incident_id))
    assert seen == [("ig.incident.opened.v1", incident), ("ig.incident.resolved.v1", incident)]

    # Prometheus itself: the alert fired for this suite's SLO during the flow, fed by this suite's burn service's
    # metrics (the job local_suite registered), and is no longer active.
    prometheus = suite["IG_PROMETHEUS_URL"]
    span = {"start": flow["started"], "end": time.time(), "step": "1"}
    async with httpx.AsyncClient(base_url=prometheus, timeout=10) as client:
        fired = (await client.get("/api/v1/query_range", params={**span, "query": (
            f'ALERTS{{alertname="BurnThrottleEngaged",alertstate="firing",slo="{names.slo}"}}')})).json()
        throttled = (await client.get("/api/v1/query_range", params={
            **span, "query": f'ig_burn_throttled{{slo="{names.slo}"}} == 1'})).json()["data"]["result"]
        active = (await client.get("/api/v1/alerts")).json()["data"]["alerts"]
    assert fired["status"] == "success" and fired["data"]["result"], fired
    assert throttled and {s["metric"]["job"] for s in throttled} == {names.burn_metrics_job}
    assert not [a for a in active if a["labels"].get("slo") == names.slo]
    assert report["alert"]["firing"]["labels"]["slo"] == names.slo and report["alert"]["resolved_seen_at"]


async def test_the_migration_went_through_the_suites_migration_service(flow: dict[str, Any],
                                                                       suite: dict[str, str]) -> None:
    """The run id the flow recorded is the one the service reports for the change, and the service's events of
    that run are on ig.migration.v1 (read here, independently of the flow), one per transition of the timeline."""
    from ig.events.v1 import events_pb2
    from ig.migration.v1 import migration_pb2, migration_pb2_grpc
    from ig_common.events.envelope import from_kafka_record
    from ig_common.grpc_client import aio_channel_as
    from ig_infra.kafka_reading import consumer_at, records_until_now

    assert flow["done"].returncode == 0, "the flow failed; see the first test"
    recorded = json.loads((flow["root"] / "migration" / "migration-service-run.json").read_text())
    run_id = recorded["run_id"]
    assert run_id.startswith("run_") and recorded["service"] == suite["IG_MIGRATION_GRPC"]
    assert recorded["status_stream"][-1]["state"] == "completed"
    assert recorded["states_seen"][-1] == "completed/completed"
    async with aio_channel_as("operator", suite["IG_MIGRATION_GRPC"]) as channel:
        stub = migration_pb2_grpc.MigrationServiceStub(channel)
        now = [u async for u in stub.Status(migration_pb2.StatusRequest(change="add-asset-index-v3"))]
    assert now[-1].run_id == run_id and now[-1].phase == "completed"

    report = json.loads((flow["root"] / "migration" / "add-asset-index-v3.json").read_text())
    transitions = [t["to"] for t in report["timeline"] if t["from"] != t["to"]]  # not the rehearsal's note
    assert report["run_id"] == run_id and transitions[-1] == "completed"
    seen: list[str] = []
    async with consumer_at(suite["IG_KAFKA_BOOTSTRAP"], "ig.migration.v1", since=flow["started"]) as consumer:
        async for record in records_until_now(consumer):
            event = from_kafka_record(record.topic, record.key, record.value, list(record.headers))
            payload = event.parse(events_pb2.MigrationPhaseChanged())
            if payload.run_id == run_id:
                assert event.type == "ig.migration.phase_changed.v1" and event.subject == payload.change
                seen.append(payload.to_phase)
    assert seen == transitions
    assert [e["to_phase"] for e in recorded["events"]] == transitions


def test_an_auditor_downloads_the_bundle_and_verifies_it_offline(flow: dict[str, Any], suite: dict[str, str],
                                                                  tmp_path: Path) -> None:
    assert flow["done"].returncode == 0, "the flow failed; see the first test"
    public_key = Path(suite["IG_RELEASE_SIGNING_KEY"]).with_suffix(".pub")  # the key the evidence service pins
    work = tmp_path / "auditor"
    outcome = retrieve_and_verify(suite["IG_PORTAL_URL"], suite["IG_OIDC_ISSUER"], RELEASE, public_key, work,
                                  tmp_path / "auditor.log", flow["root"] / "evidence" / "bundle")
    assert "downloaded" in outcome and "cosign: Verified OK" in outcome
    assert "Verified OK" in (tmp_path / "auditor.log").read_text()
    # What the auditor downloaded still attests the release's images, signed with the rest.
    bundle = work / "bundle"
    images = [f"--subject={image['name']}@sha256:{image['digest']['sha256']}" for image in IMAGES]
    attested = subprocess.run([str(Path(sys.executable).parent / "ig-evidence"), "verify", str(bundle), "--key",
                               str(public_key), *images], capture_output=True, text=True, check=False)
    assert attested.returncode == 0, attested.stdout + attested.stderr

    # One byte changed in a downloaded artifact: ig-evidence names it; a changed manifest: cosign refuses it.
    manifest = json.loads((bundle / "manifest.json").read_text())
    first = manifest["artifacts"][0]
    (bundle / first["path"]).write_bytes((bundle / first["path"]).read_bytes() + b" ")
    tampered = subprocess.run([str(Path(sys.executable).parent / "ig-evidence"), "verify", str(bundle), "--key",
                               str(public_key)], capture_output=True, text=True, check=False)
    assert tampered.returncode != 0 and first["name"] in tampered.stdout + tampered.stderr
    (bundle / "manifest.json").write_text((bundle / "manifest.json").read_text().replace(RELEASE, "v9.9.9", 1))
    with pytest.raises(StageFailed, match="cosign verify-blob exited"):
        cosign_verify(bundle, public_key, tmp_path / "cosign-tampered.log")


@pytest.fixture(scope="module")
def infrastructure(infra: Any) -> Iterator[dict[str, str]]:
    """What `make infra-up` + `ig-infra env` give the workflow: here a database and an OPA of the job's own."""
    from ig_policy.testing import opa_server

    database_url = infra.new_database("ig_release_job")
    try:
        with opa_server() as opa:
            yield {**infra.env(database_url), **opa.env(), "IG_OIDC_ISSUER": infra.oidc_issuer()}
    finally:
        infra.drop_database(database_url)


def release_job(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    # The job's own IG_* variables only: nothing of a suite the test process may know about leaks in. Where the
    # machine's infrastructure is (its run dir and ports, as `make` was given them) stays: a run with moved ports
    # would otherwise send the job to the default ones.
    clean = {k: v for k, v in os.environ.items() if not k.startswith("IG_") or _locates_infrastructure(k)}
    return subprocess.run([str(BIN / "ig-release"), "job", "--start-suite", *args], env={**clean, **env}, cwd=REPO,
                          capture_output=True, text=True, timeout=900, check=False)


def _locates_infrastructure(variable: str) -> bool:
    return variable in ("IG_RUN_DIR", "IG_CACHE_DIR") or (variable.startswith("IG_") and variable.endswith("_PORT"))


def stages_of(artifacts: Path, version: str) -> list[tuple[str, str]]:
    record = json.loads((artifacts / version / "release-flow.json").read_text())
    return [(s["stage"], s["state"]) for s in record["stages"]]


def verify_published(folder: Path, public_key: Path, log: Path) -> None:
    """The auditor's check of what was published, independent of the job's own: ig-evidence + cosign."""
    done = subprocess.run([str(BIN / "ig-evidence"), "verify", str(folder), "--key", str(public_key), "--contract",
                           str(REPO / "policies/evidence/release-contract.v1.yaml")],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    cosign_verify(folder, public_key, log)


@pytest.fixture(scope="module")
def first(flow: dict[str, Any], infrastructure: dict[str, str],
          tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    assert flow["done"].returncode == 0, "the flow failed; see its first test"
    work = tmp_path_factory.mktemp("release-job")
    collected = work / "collected"  # what the flow produced, laid out <type>/<file>, plus another job's output
    shutil.copytree(flow["root"] / "evidence" / "inputs", collected)
    (collected / "evidence-test-report").mkdir()  # as actions/download-artifact lays out `evidence-*`
    (collected / "evidence-test-report" / "junit.xml").write_bytes(JUNIT)
    done = release_job(infrastructure, "--version", RELEASE, "--no-produce", "--collected", str(collected),
                       "--artifacts", str(work / "artifacts"), "--publish", f"dir:{work / 'published'}")
    return {"done": done, "work": work, "infrastructure": infrastructure}


def test_the_job_builds_verifies_and_publishes_a_bundle_that_verifies(first: dict[str, Any]) -> None:
    done, work = first["done"], first["work"]
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert stages_of(work / "artifacts", RELEASE) == [(name, "passed") for name in (
        "collect", "previous", "evidence", "portal", "publish")]
    published = work / "published" / RELEASE
    assert sorted(p.name for p in published.iterdir()) == sorted([
        f"evidence-{RELEASE}.tar.gz", "manifest.json", "manifest.json.sig", "manifest.sigstore.json", "cosign.pub"])
    pinned = Path(first["infrastructure"]["IG_RELEASE_SIGNING_KEY"]).with_suffix(".pub")  # the suite's pinned key
    assert (published / "cosign.pub").read_bytes() == pinned.read_bytes()
    verify_published(published, pinned, work / "cosign.log")
    manifest = json.loads((published / "manifest.json").read_text())
    assert manifest["complete"] is True and manifest["release"] == RELEASE and "ledger" in manifest
    test_reports = {a["name"] for a in manifest["artifacts"] if a["type"] == "test-report"}
    assert {"junit.xml", "multi-region-junit.xml"} <= test_reports  # collected from "make test" + the region drill
    with tarfile.open(published / f"evidence-{RELEASE}.tar.gz") as tar:
        member = tar.extractfile("artifacts/test-report/junit.xml")
        assert member is not None and member.read() == JUNIT


def test_a_later_release_gathers_its_inputs_signs_with_a_given_key_and_diffs_against_the_published_one(
        first: dict[str, Any], infrastructure: dict[str, str]) -> None:
    work = first["work"]
    assert first["done"].returncode == 0, "the first release failed; see the first test"
    keys = work / "job-keys"  # not the suite's key: the job pins the key it is given for its evidence service
    subprocess.run([str(BIN / "ig-evidence"), "keygen", "--out", str(keys)], check=True, capture_output=True)
    inputs = work / "artifacts" / RELEASE / "evidence" / "inputs"  # every type, laid out <type>/<file>
    env = {**infrastructure, "RELEASE_SIGNING_KEY": (keys / "cosign.key").read_text()}
    done = release_job(env, "--version", SECOND, "--no-produce", "--collected", str(inputs), "--artifacts",
                       str(work / "artifacts"), "--key", "env://RELEASE_SIGNING_KEY", "--public-key",
                       str(keys / "cosign.pub"), "--publish", f"dir:{work / 'published'}")
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert stages_of(work / "artifacts", SECOND) == [(name, "passed") for name in (
        "collect", "previous", "evidence", "portal", "publish")]
    assert not (work / "artifacts" / SECOND / "keys").exists()  # the given key signed it, no generated pair
    published = work / "published" / SECOND
    verify_published(published, keys / "cosign.pub", work / "cosign-second.log")
    with tarfile.open(published / f"evidence-{SECOND}.tar.gz") as tar:
        member = tar.extractfile("artifacts/schema-diff/schema-diff.json")
        assert member is not None
        assert json.load(member)["previousRelease"] == RELEASE


def test_missing_required_evidence_fails_the_job_and_nothing_is_published(first: dict[str, Any],
                                                                          infrastructure: dict[str, str]) -> None:
    work = first["work"]
    assert first["done"].returncode == 0, "the first release failed; see the first test"
    partial = work / "partial-inputs"
    shutil.copytree(work / "artifacts" / RELEASE / "evidence" / "inputs", partial)
    shutil.rmtree(partial / "chaos-report")
    done = release_job(infrastructure, "--version", INCOMPLETE, "--no-produce", "--collected", str(partial),
                       "--artifacts", str(work / "artifacts"), "--publish", f"dir:{work / 'published'}")
    assert done.returncode == 1
    assert "stage evidence failed" in done.stdout and "chaos-report" in done.stdout, done.stdout[-4000:]
    assert stages_of(work / "artifacts", INCOMPLETE)[-1] == ("evidence", "failed")
    assert not (work / "published" / INCOMPLETE).exists()
