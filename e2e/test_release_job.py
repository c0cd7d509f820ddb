"""The release job (`ig-release job`, what .github/workflows/release.yml runs) end to end, for real: it starts
policy, evidence and portal itself (--start-suite) on the shared PostgreSQL (a database of its own), Kafka and Dex
and a private OPA, produces the evidence (policy traffic, burn, migration, region drill: the `ci` profile), takes a
collected JUnit report as another job's output, builds, signs, verifies (ig-evidence + the real cosign), registers,
lets the auditor verify through the portal, and publishes to a local folder — then a later release gathers its
inputs instead of producing them and diffs its schema against the published one, and a release missing required
evidence fails the job and publishes nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ig_release.stages.evidence import cosign_verify

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
FIRST, SECOND, INCOMPLETE = "v1.2.1", "v1.2.2", "v1.2.3"
JUNIT = b'<?xml version="1.0"?><testsuites><testsuite name="make test" tests="1"><testcase name="t"/></testsuite>' \
        b"</testsuites>\n"


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
    # The job's own IG_* variables only: nothing of a suite the test process may know about leaks in.
    clean = {k: v for k, v in os.environ.items() if not k.startswith("IG_")}
    return subprocess.run([str(BIN / "ig-release"), "job", "--start-suite", *args], env={**clean, **env}, cwd=REPO,
                          capture_output=True, text=True, timeout=900, check=False)


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
def first(infrastructure: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("release-job")
    collected = work / "collected" / "evidence-test-report"  # as actions/download-artifact lays out `evidence-*`
    collected.mkdir(parents=True)
    (collected / "junit.xml").write_bytes(JUNIT)
    done = release_job(infrastructure, "--version", FIRST, "--profile", "ci", "--artifacts", str(work / "artifacts"),
                       "--collected", str(work / "collected"), "--publish", f"dir:{work / 'published'}")
    return {"done": done, "work": work, "infrastructure": infrastructure}


def test_the_job_produces_builds_verifies_and_publishes_a_bundle_that_verifies(first: dict[str, Any]) -> None:
    done, work = first["done"], first["work"]
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert stages_of(work / "artifacts", FIRST) == [(name, "passed") for name in (
        "collect", "policy", "burn", "migration", "region", "previous", "evidence", "portal", "publish")]
    published = work / "published" / FIRST
    assert sorted(p.name for p in published.iterdir()) == sorted([
        f"evidence-{FIRST}.tar.gz", "manifest.json", "manifest.json.sig", "manifest.sigstore.json", "cosign.pub"])
    pinned = Path(first["infrastructure"]["IG_RELEASE_SIGNING_KEY"]).with_suffix(".pub")  # the suite's pinned key
    assert (published / "cosign.pub").read_bytes() == pinned.read_bytes()
    verify_published(published, pinned, work / "cosign.log")
    manifest = json.loads((published / "manifest.json").read_text())
    assert manifest["complete"] is True and manifest["release"] == FIRST and "ledger" in manifest
    test_reports = {a["name"] for a in manifest["artifacts"] if a["type"] == "test-report"}
    assert {"junit.xml", "multi-region-junit.xml"} <= test_reports  # collected from "make test" + the region drill
    with tarfile.open(published / f"evidence-{FIRST}.tar.gz") as tar:
        member = tar.extractfile("artifacts/test-report/junit.xml")
        assert member is not None and member.read() == JUNIT


def test_a_later_release_gathers_its_inputs_signs_with_a_given_key_and_diffs_against_the_published_one(
        first: dict[str, Any], infrastructure: dict[str, str]) -> None:
    work = first["work"]
    assert first["done"].returncode == 0, "the first release failed; see the first test"
    keys = work / "job-keys"  # not the suite's key: the job pins the key it is given for its evidence service
    subprocess.run([str(BIN / "ig-evidence"), "keygen", "--out", str(keys)], check=True, capture_output=True)
    inputs = work / "artifacts" / FIRST / "evidence" / "inputs"  # every type, laid out <type>/<file>
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
        assert json.load(member)["previousRelease"] == FIRST


def test_missing_required_evidence_fails_the_job_and_nothing_is_published(first: dict[str, Any],
                                                                          infrastructure: dict[str, str]) -> None:
    work = first["work"]
    assert first["done"].returncode == 0, "the first release failed; see the first test"
    partial = work / "partial-inputs"
    shutil.copytree(work / "artifacts" / FIRST / "evidence" / "inputs", partial)
    shutil.rmtree(partial / "chaos-report")
    done = release_job(infrastructure, "--version", INCOMPLETE, "--no-produce", "--collected", str(partial),
                       "--artifacts", str(work / "artifacts"), "--publish", f"dir:{work / 'published'}")
    assert done.returncode == 1
    assert "stage evidence failed" in done.stdout and "chaos-report" in done.stdout, done.stdout[-4000:]
    assert stages_of(work / "artifacts", INCOMPLETE)[-1] == ("evidence", "failed")
    assert not (work / "published" / INCOMPLETE).exists()
