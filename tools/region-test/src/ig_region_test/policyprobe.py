"""Ask each region's policy stack whether a pinned tenant's data may be read there.

Two layers are asked, both the real processes running in the region:
- the policy service (gRPC ``ig.policy.v1.PolicyService/Decide``) -- what the issue requires;
- that region's OPA (``data.ig.ctx.decision``), which the service consults.
Where a layer does not answer yet (the service without Decide, or no residency rule in the loaded policies),
the probe is recorded as ``pending`` with the reason -- never as passed.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from ig.policy.v1 import policy_pb2, policy_pb2_grpc
from ig_common.grpc_client import channel_as

from ig_region_test.residency import PinnedTenant

RESIDENCY_RULE = "ig.residency.cross_region"


def probe_time() -> str:
    """Now, as the policy service judges it (its own clock; a sent time is only checked against it): OPA is asked
    at the same moment, so both layers see one time and both regions of a pair the same window."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def pinned_tenants_from_policy(data_file: Path) -> dict[str, str]:
    """tenant -> pinned region, from the policy data the residency rule itself reads."""
    try:
        tenants = json.loads(data_file.read_text()).get("tenants", {})
    except (OSError, ValueError):
        return {}
    return {name: str(cfg["residency"]["pinned_region"]) for name, cfg in sorted(tenants.items())
            if isinstance(cfg, dict) and isinstance(cfg.get("residency"), dict)
            and cfg["residency"].get("pinned_region")}


def policy_revision(repo: Path, policies: Path) -> dict[str, Any]:
    head = subprocess.run(["git", "-C", str(repo), "log", "-1", "--format=%H %s", "--", str(policies)],
                          capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--", str(policies)],
                           capture_output=True, text=True).stdout.strip()
    return {"last_commit_touching_policies": head or None, "uncommitted_changes": bool(dirty)}


def decision_input(tenant: PinnedTenant, asking_region: str) -> dict[str, Any]:
    return {
        "actor": {"id": "u-region-test", "tenant": tenant.tenant, "roles": ["analyst"], "purposes": ["investigation"]},
        "resource": {"type": "case", "id": f"{tenant.tenant}-rec-1", "tenant": tenant.tenant,
                     "purpose": "investigation", "region": tenant.home, "classification": "internal"},
        "action": "read",
        "context": {"time": probe_time(), "network_zone": "corp", "device_trust": "high", "session_risk": 10,
                    "auth_level": "mfa", "region": asking_region},
    }


@dataclass(frozen=True)
class OpaEndpoint:
    """A region's OPA and the bearer header its locked API demands (the policy service's token)."""

    url: str
    headers: dict[str, str]


def ask_opa(opa: OpaEndpoint, payload: dict[str, Any]) -> dict[str, Any]:
    body = json.dumps({"input": payload}).encode()
    request = urllib.request.Request(f"{opa.url}/v1/data/ig/ctx/decision", data=body,
                                     headers={"Content-Type": "application/json", **opa.headers})
    with urllib.request.urlopen(request, timeout=5) as response:
        answer: dict[str, Any] = json.loads(response.read()).get("result") or {}
    return answer


def ask_service(target: str, payload: dict[str, Any]) -> dict[str, Any]:
    when = Timestamp()
    when.FromDatetime(datetime.fromisoformat(payload["context"]["time"].replace("Z", "+00:00")).astimezone(UTC))
    context = {k: v for k, v in payload["context"].items() if k != "time"}
    request = policy_pb2.DecideRequest(
        actor=policy_pb2.Actor(**payload["actor"]), resource=policy_pb2.Resource(**payload["resource"]),
        action=payload["action"], context=policy_pb2.Context(time=when, **context),
    )
    with channel_as("region-test", target) as channel:
        response = policy_pb2_grpc.PolicyServiceStub(channel).Decide(request, timeout=5)  # type: ignore[no-untyped-call]
    return {"result": policy_pb2.Result.Name(response.result).removeprefix("RESULT_"), "rule_id": response.rule_id,
            "explanation": response.explanation, "decision_id": response.decision_id,
            "reasons": [{"rule_id": r.rule_id, "message": r.message} for r in response.reasons]}


def judge_pair(layer: str, elsewhere: dict[str, Any], at_home: dict[str, Any]) -> tuple[str, str]:
    """(status, why): denied elsewhere by the residency rule, and not by it at home."""
    home_reasons = {r.get("rule_id") for r in at_home.get("reasons", [])} | {at_home.get("rule_id")}
    if elsewhere.get("result") == "DENY" and elsewhere.get("rule_id") == RESIDENCY_RULE \
            and RESIDENCY_RULE not in home_reasons:
        return "passed", f"{layer}: DENY by {RESIDENCY_RULE} in the other region, not in the home region"
    if not elsewhere or (elsewhere.get("rule_id") != RESIDENCY_RULE and RESIDENCY_RULE not in home_reasons
                         and not _rule_known(elsewhere)):
        return "pending", f"{layer}: no residency decision yet (answer: {elsewhere or 'empty'})"
    return "failed", f"{layer}: expected DENY by {RESIDENCY_RULE} elsewhere only; got {elsewhere} / home {at_home}"


def _rule_known(answer: dict[str, Any]) -> bool:
    return any(r.get("rule_id") == RESIDENCY_RULE for r in answer.get("reasons", []))


def probe(tenant: PinnedTenant, other: str, opas: dict[str, OpaEndpoint], service_targets: dict[str, str],
          rules_loaded: bool) -> dict[str, Any]:
    result: dict[str, Any] = {"tenant": tenant.tenant, "home": tenant.home, "asked_in": other,
                              "input": decision_input(tenant, other)}
    layers: tuple[tuple[str, Any, dict[str, Any]], ...] = (
        ("opa", ask_opa, opas), ("policy-service", ask_service, service_targets))
    for layer, ask, where in layers:
        if tenant.home not in where or other not in where:
            result[layer] = {"status": "skipped", "why": f"{layer} not started in this run (--no-policy)"}
            continue
        try:
            elsewhere = ask(where[other], decision_input(tenant, other))
            at_home = ask(where[tenant.home], decision_input(tenant, tenant.home))
        except grpc.RpcError as error:
            code = error.code()
            status = "pending" if code == grpc.StatusCode.UNIMPLEMENTED else "failed"
            result[layer] = {"status": status, "why": f"{layer}: {code.name}: {error.details()}"}
            continue
        except OSError as error:
            result[layer] = {"status": "failed", "why": f"{layer}: {error}"}
            continue
        status, why = judge_pair(layer, elsewhere, at_home)
        if status == "pending" and not rules_loaded:
            why += f"; the loaded policies have no rule {RESIDENCY_RULE}"
        result[layer] = {"status": status, "why": why, "elsewhere": elsewhere, "at_home": at_home}
    return result
