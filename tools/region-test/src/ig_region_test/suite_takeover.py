"""What region-b serves once it has taken over from region-a: the global tenant's release and decisions, and, for
a tenant pinned to region-a, nothing (residency wins over availability).

Every answer is asked of the real region-b processes: its policy service (gRPC Decide as ``region-test``), its
audit portal (an ID token from the shared Dex, the password grant of the ``audit-api`` client) and its evidence
service (``ig-evidence`` as ``release``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ig.evidence.v1 import evidence_pb2, evidence_pb2_grpc
from ig_common.grpc_client import channel_as
from ig_infra.paths import REPO_ROOT

from ig_region_test.policyprobe import RESIDENCY_RULE, ask_service, decision_input
from ig_region_test.residency import PinnedTenant

GLOBAL_TENANT = "beta"  # no residency pin in policies/rego/ig/config/data.json: served by both regions
PINNED_TENANT = "alpha"  # pinned to region-a
# The directory users of tools/infra/dex (the demo's, documented in the repository README).
DEMO_USERS = {"alpha": ("auditor@alpha.example", "alpha-auditor-pw"),
              "beta": ("auditor@beta.example", "beta-auditor-pw")}


def registered_releases(evidence_target: str, tenant: str) -> list[str]:
    with channel_as("release", evidence_target) as channel:
        reply = evidence_pb2_grpc.EvidenceServiceStub(channel).ListReleases(  # type: ignore[no-untyped-call]
            evidence_pb2.ListReleasesRequest(tenant=tenant), timeout=10)
    return [release.name for release in reply.releases]


def ensure_release(evidence_target: str, *, version: str, tenant: str, inputs: Path, signing_key: Path,
                   out: Path, source_date_epoch: str = "1767225600") -> str:
    """``version`` registered for ``tenant`` at this region's evidence service: when missing, built from
    ``inputs`` with ``ig-evidence``, signed with the key this region's evidence service pins, anchored in this
    region's ledger, and registered. Returns what was done."""
    if version in registered_releases(evidence_target, tenant):
        return f"{tenant}'s {version} was already registered in this region"
    if not inputs.is_dir():
        raise FileNotFoundError(f"no evidence inputs at {inputs} to build {tenant}'s {version} from (run `make up` "
                                "first: its release flow writes them)")
    cli = str(Path(sys.executable).parent / "ig-evidence")
    out.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SOURCE_DATE_EPOCH": source_date_epoch}
    steps = ([cli, "build", "--release", version, "--inputs", str(inputs), "--out", str(out), "--key",
              str(signing_key), "--ledger", evidence_target, "--tenant", tenant, "--force", "--allow-incomplete",
              "--repo-root", str(REPO_ROOT)],
             [cli, "register", str(out), "--release", version, "--server", evidence_target, "--tenant", tenant])
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(step[:2])} failed ({done.returncode}):\n{done.stdout[-2000:]}"
                               f"{done.stderr[-2000:]}")
    return f"{tenant}'s {version} built from {inputs}, signed with {signing_key.name} and registered now"


def decide(policy_target: str, tenant: str, home: str, asking_region: str) -> dict[str, Any]:
    """A read decision about ``tenant``'s data at ``policy_target`` (the request claims ``home``: only the serving
    region counts)."""
    payload = decision_input(PinnedTenant(tenant, home, "failover"), asking_region)
    payload["context"]["region"] = home
    return ask_service(policy_target, payload)


def id_token(issuer: str, tenant: str) -> str:
    email, password = DEMO_USERS[tenant]
    form = urllib.parse.urlencode({"grant_type": "password", "username": email, "password": password,
                                   "scope": "openid email profile groups", "client_id": "audit-api",
                                   "client_secret": ""}).encode()
    request = urllib.request.Request(f"{issuer}/token", data=form, method="POST",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(json.loads(response.read())["id_token"])


def portal_get(portal: str, path: str, token: str) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(f"{portal}{path}", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=15) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        body = error.read()
        try:
            return error.code, json.loads(body)
        except ValueError:
            return error.code, {"body": body.decode(errors="replace")[:300]}


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, **self.detail}


def served_by(region: str, *, policy: str, portal: str, issuer: str, version: str,
              pinned_home: str) -> list[Check]:
    """The global tenant is served (Decide answers without the residency rule; the portal lists its release and its
    artifacts), the pinned tenant is refused (Decide: DENY by the residency rule; the portal: 403)."""
    checks: list[Check] = []
    beta = decide(policy, GLOBAL_TENANT, region, region)
    beta_rules = {beta["rule_id"]} | {r["rule_id"] for r in beta["reasons"]}
    checks.append(Check(f"{region} Decide answers for {GLOBAL_TENANT}",
                        bool(beta["decision_id"]) and RESIDENCY_RULE not in beta_rules,
                        {"answer": _short(beta)}))
    alpha = decide(policy, PINNED_TENANT, pinned_home, region)
    checks.append(Check(f"{region} Decide denies {PINNED_TENANT} by {RESIDENCY_RULE}",
                        alpha["result"] == "DENY" and alpha["rule_id"] == RESIDENCY_RULE,
                        {"answer": _short(alpha)}))
    token = id_token(issuer, GLOBAL_TENANT)
    status, body = portal_get(portal, "/audit/releases", token)
    listed = [r.get("name") for r in body.get("releases", [])] if status == 200 else []
    art_status, artifacts = portal_get(portal, f"/audit/artifacts?release={urllib.parse.quote(version)}", token)
    count = len(artifacts.get("artifacts", [])) if art_status == 200 else 0
    checks.append(Check(f"{region} portal serves {GLOBAL_TENANT}'s {version}",
                        status == 200 and version in listed and art_status == 200 and count > 0,
                        {"releases_status": status, "releases": listed, "artifacts_status": art_status,
                         "artifacts": count}))
    status, body = portal_get(portal, "/audit/releases", id_token(issuer, PINNED_TENANT))
    checks.append(Check(f"{region} portal refuses {PINNED_TENANT} (403)", status == 403,
                        {"status": status, "detail": str(body.get("detail", body))[:300]}))
    return checks


def _short(answer: dict[str, Any]) -> dict[str, Any]:
    return {k: answer[k] for k in ("result", "rule_id", "explanation", "decision_id")}
