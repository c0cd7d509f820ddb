"""The evidence chart's witness (witness.enabled) and the ledger's IG_WITNESSES: rendered, schema-valid, within the
workload policy, one pod on a kept claim, its key from a Secret of its own, reachable on add-checkpoint only from
the ledger's pods, and the settings the witness process reads (loaded by its own settings class)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from ig_evidence.domain import note
from ig_evidence.domain.cosignature import Cosigner
from ig_infra.process import InfraError
from ig_k8s.validate import kubeconform, kubeconform_errors, policy_violations

Render = Callable[..., list[dict[str, Any]]]
LEDGER_KEY = note.verifier_key("maestro-conductor.dev/evidence-ledger", Ed25519PrivateKey.generate().public_key())
WITNESS_KEY = Cosigner("witness.maestro-conductor.dev/region-b", Ed25519PrivateKey.generate().public_key())
ENABLED = ("witness.enabled=true", "witness.logs[0].origin=maestro-conductor.dev/evidence-ledger",
           f"witness.logs[0].verifierKeys[0]={LEDGER_KEY}")


def named(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def test_without_witness_enabled_nothing_of_it_is_rendered(render: Render) -> None:
    objects = render("evidence", "region-a")
    assert [o for o in objects if "witness" in o["metadata"]["name"]] == []
    settings = named(objects, "ConfigMap", "evidence-settings")["data"]
    assert "IG_WITNESSES" not in settings


@pytest.mark.parametrize("region", ["region-a", "region-b"])
def test_the_witness_renders_valid_and_within_the_workload_policy(render: Render, region: str) -> None:
    objects = render("evidence", region, ENABLED)
    report = kubeconform(yaml.safe_dump_all(objects))
    assert kubeconform_errors(report) == [] and report["exit_code"] == 0
    assert policy_violations(objects) == []
    deployment = named(objects, "Deployment", "evidence-witness")
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "witness" and pod["nodeSelector"] == {"topology.kubernetes.io/region": region}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["witness-key"]["secret"] == {"secretName": "evidence-witness-key", "defaultMode": 0o440,
                                                "items": [{"key": "witness.key", "path": "witness.key"}]}
    assert volumes["state"]["persistentVolumeClaim"]["claimName"] == "evidence-witness-state"
    claim = named(objects, "PersistentVolumeClaim", "evidence-witness-state")
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    # The evidence Service must not select the witness pod, nor the witness Service the evidence pods.
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    evidence_selector = named(objects, "Service", "evidence")["spec"]["selector"]
    assert not all(labels.get(k) == v for k, v in evidence_selector.items())


def test_only_the_ledger_pods_reach_add_checkpoint_and_the_witness_calls_nothing(render: Render) -> None:
    objects = render("evidence", "region-a", ENABLED)
    policy = named(objects, "NetworkPolicy", "evidence-witness")["spec"]
    api_rule = next(r for r in policy["ingress"] if {"port": "api", "protocol": "TCP"} in r["ports"])
    assert api_rule["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "evidence",
                                                                 "app.kubernetes.io/instance": "evidence"}}}]
    assert all(p["port"] == 53 for rule in policy["egress"] for p in rule["ports"])
    assert all("to" not in rule for rule in policy["egress"])


def test_the_rendered_settings_load_in_the_witness_settings(render: Render, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from ig_evidence.witness.settings import WitnessSettings

    data = named(render("evidence", "region-b", ENABLED), "ConfigMap", "evidence-witness-settings")["data"]
    (tmp_path / "grpc-methods.yaml").write_text("identities: [witness]\n")
    for key, value in data.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("IG_AUTHZ_TABLE", str(tmp_path / "grpc-methods.yaml"))
    loaded = WitnessSettings()
    assert loaded.witness_name == "witness.maestro-conductor.dev/region-b"
    assert [(log.origin, log.verifier_keys) for log in loaded.logs()] == [
        ("maestro-conductor.dev/evidence-ledger", (LEDGER_KEY,))]
    assert str(loaded.key_file()) == "/etc/ig/witness/witness.key" and loaded.witness_port == 8096


def test_the_ledger_gets_its_witnesses_in_ig_witnesses(render: Render) -> None:
    url = "https://evidence-witness.ig.svc.cluster.local:8096"
    objects = render("evidence", "region-a", (f"witnesses[0].url={url}",
                                              f"witnesses[0].verifierKey={WITNESS_KEY.verifier_key}"))
    settings = named(objects, "ConfigMap", "evidence-settings")["data"]
    assert json.loads(settings["IG_WITNESSES"]) == [{"url": url, "verifier_key": WITNESS_KEY.verifier_key,
                                                     "identity": "witness"}]
    assert settings["IG_WITNESS_TIMEOUT_SECONDS"] == "2"


@pytest.mark.parametrize(("sets", "message"), [
    (("witness.enabled=true",), r"witness\.logs: the logs this witness cosigns are required"),
    (("witness.enabled=true", "witness.logs[0].origin=x", "witness.logs[0].verifierKeys[0]=nope"),
     r"witness\.logs: \"nope\" is not a note verifier key"),
    (("witnesses[0].url=http://plain:8096", f"witnesses[0].verifierKey={WITNESS_KEY.verifier_key}"),
     r"witnesses: url \"http://plain:8096\" must be https"),
])
def test_bad_witness_values_are_refused_naming_them(render: Render, sets: tuple[str, ...], message: str) -> None:
    with pytest.raises(InfraError, match=message):
        render("evidence", "region-a", sets)
