"""Offline validation of rendered manifests: kubeconform against pinned JSON schemas, then our Rego policy."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml
from ig_infra.go_tools import tool_path
from ig_infra.paths import REPO_ROOT, Paths
from ig_infra.process import InfraError

from ig_k8s.helm import KUBE_VERSION
from ig_k8s.schemas import ensure_schemas

POLICY_DIR = REPO_ROOT / "policies" / "k8s"
# Kinds whose schemas are CRDs (not in the Kubernetes schemas); kubeconform skips exactly these.
CRD_KINDS = ("ServiceMonitor", "Certificate")


def kubeconform(rendered: str, paths: Paths | None = None) -> dict[str, Any]:
    """Validate a multi-document YAML stream strictly and offline; return kubeconform's JSON summary."""
    paths = paths or Paths.from_environment()
    binary = tool_path(paths.cache, "kubeconform")
    kinds = {(doc["kind"], doc["apiVersion"]) for doc in yaml.safe_load_all(rendered)
             if isinstance(doc, dict) and "kind" in doc and "apiVersion" in doc}
    root = ensure_schemas(paths.cache, KUBE_VERSION, kinds)
    location = str(root) + "/{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}/" \
                           "{{ .ResourceKind }}{{ .KindSuffix }}.json"
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as stream:
        stream.write(rendered)
        stream.flush()
        result = subprocess.run([str(binary), "-strict", "-summary", "-output", "json", "-kubernetes-version",
                                 KUBE_VERSION, "-schema-location", location, "-skip", ",".join(CRD_KINDS),
                                 stream.name], capture_output=True, text=True, timeout=120)
    try:
        report: dict[str, Any] = json.loads(result.stdout)
    except json.JSONDecodeError as error:
        raise InfraError(f"kubeconform gave no JSON report:\n{result.stdout[-2000:]}{result.stderr[-2000:]}") from error
    report["exit_code"] = result.returncode
    return report


def kubeconform_errors(report: dict[str, Any]) -> list[str]:
    return [f"{r.get('kind')}/{r.get('name')}: {r.get('msg')}" for r in report.get("resources", [])
            if r.get("status") in ("statusInvalid", "statusError")]


def policy_violations(manifests: list[dict[str, Any]], paths: Paths | None = None) -> list[str]:
    """`opa eval` of data.ig.k8s.deny over the manifests with the project's OPA binary (no server involved)."""
    paths = paths or Paths.from_environment()
    opa = tool_path(paths.cache, "opa")
    with tempfile.TemporaryDirectory() as scratch:
        input_file = Path(scratch) / "input.json"
        input_file.write_text(json.dumps({"manifests": manifests}))
        result = subprocess.run([str(opa), "eval", "--fail-defined=false", "--format", "json", "--data",
                                 str(POLICY_DIR), "--input", str(input_file), "data.ig.k8s.deny"],
                                capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise InfraError(f"opa eval failed:\n{result.stderr[-3000:]}")
    output = json.loads(result.stdout)
    return sorted(output["result"][0]["expressions"][0]["value"])
