"""The release flow end to end (issue 10): `ig-release run --profile ci` — the same code as `make up`'s demo run,
shorter — against real services (policy, evidence, portal as processes on free ports; the shared PostgreSQL, Kafka,
OPA and Dex; the burn harness's private Prometheus + burn service; ig-migrate; region-test in network namespaces),
ending with the auditor's offline verification of the bundle downloaded from the portal, by `ig-evidence verify`
and by the real cosign."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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


@pytest.fixture(scope="module")
def suite(infra: Any, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    from ig_policy.testing import opa_server

    # A private OPA (same binary, same policies): the shared one serves every other test on this box too.
    with opa_server() as opa:
        base = {**infra.env(database_url), **opa.env(), "IG_OIDC_ISSUER": infra.oidc_issuer()}
        with local_suite(base, tmp_path_factory.mktemp("suite")) as env:
            yield env


@pytest.fixture(scope="module")
def flow(suite: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    artifacts = tmp_path_factory.mktemp("release")
    done = subprocess.run([str(Path(sys.executable).parent / "ig-release"), "run", "--version", RELEASE, "--profile",
                           "ci", "--artifacts", str(artifacts)], env={**os.environ, **suite}, cwd=REPO,
                          capture_output=True, text=True, timeout=900, check=False)
    root = artifacts / RELEASE
    record = json.loads((root / "release-flow.json").read_text()) if (root / "release-flow.json").exists() else {}
    return {"done": done, "root": root, "record": record}


def test_every_stage_passes_and_the_summary_says_where_things_are(flow: dict[str, Any]) -> None:
    done = flow["done"]
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    stages = [(s["stage"], s["state"]) for s in flow["record"]["stages"]]
    assert stages == [(name, "passed") for name in ("policy", "burn", "migration", "region", "evidence", "portal")]
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
    assert flipped["flags"]["subs.optimizedBuffer"] is False and flipped["incident"]["status"] == "open"
    report = json.loads((root / "migration" / "add-asset-index-v3.json").read_text())
    assert report["aca"]["score"] >= 0.9 and report["shadow_read"]["mismatches"] == 0
    rehearsal = json.loads((root / "migration" / "backout-rehearsal.json").read_text())
    assert rehearsal["validated"] is True
    rtbf = json.loads((root / "migration" / "rtbf-log.json").read_text())
    assert sum(rtbf["rows_before"].values()) > 0 and sum(rtbf["rows_after"].values()) == 0
    region = json.loads((root / "region" / "multi-region" / "multi-region-results.json").read_text())
    assert region["phases"][0]["rpo_lost_writes"] == 0
    manifest = json.loads((root / "evidence" / "bundle" / "manifest.json").read_text())
    assert manifest["complete"] is True and manifest["release"] == RELEASE
    assert {"sbom", "provenance", "schema-diff", "decision-coverage", "multi-region", "aca-report"} <= {
        a["type"] for a in manifest["artifacts"]}


def test_an_auditor_downloads_the_bundle_and_verifies_it_offline(flow: dict[str, Any], suite: dict[str, str],
                                                                  tmp_path: Path) -> None:
    assert flow["done"].returncode == 0, "the flow failed; see the first test"
    public_key = Path(suite["IG_RELEASE_SIGNING_KEY"]).with_suffix(".pub")  # the key the evidence service pins
    work = tmp_path / "auditor"
    outcome = retrieve_and_verify(suite["IG_PORTAL_URL"], suite["IG_OIDC_ISSUER"], RELEASE, public_key, work,
                                  tmp_path / "auditor.log", flow["root"] / "evidence" / "bundle")
    assert "downloaded" in outcome and "cosign: Verified OK" in outcome
    assert "Verified OK" in (tmp_path / "auditor.log").read_text()

    # One byte changed in a downloaded artifact: ig-evidence names it; a changed manifest: cosign refuses it.
    bundle = work / "bundle"
    manifest = json.loads((bundle / "manifest.json").read_text())
    first = manifest["artifacts"][0]
    (bundle / first["path"]).write_bytes((bundle / first["path"]).read_bytes() + b" ")
    tampered = subprocess.run([str(Path(sys.executable).parent / "ig-evidence"), "verify", str(bundle), "--key",
                               str(public_key)], capture_output=True, text=True, check=False)
    assert tampered.returncode != 0 and first["name"] in tampered.stdout + tampered.stderr
    (bundle / "manifest.json").write_text((bundle / "manifest.json").read_text().replace(RELEASE, "v9.9.9", 1))
    with pytest.raises(StageFailed, match="cosign verify-blob exited"):
        cosign_verify(bundle, public_key, tmp_path / "cosign-tampered.log")
