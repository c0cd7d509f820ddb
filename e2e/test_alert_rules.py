"""The release alert rules (deploy/alerts/ig-alerts.rules.yml): promtool accepts them and their unit tests pass,
the tests catch a wrong threshold, every metric they read is one a service really exports, and a real Prometheus
loading them fires an alert from a real scrape."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, Gauge, start_http_server

REPO = Path(__file__).resolve().parents[1]
ALERTS = REPO / "deploy" / "alerts"
RULES = ALERTS / "ig-alerts.rules.yml"
TESTS = ALERTS / "ig-alerts.tests.yml"
# Read by a rule, exported by no service yet: the integrator adds it (see deploy/alerts/README.md). When it lands
# in the code, this test says so, and the entry must go.
PENDING_METRICS: set[str] = set()
BRIEF_ALERTS = {"EvidenceMissingArtifact", "BurnBudgetOver20Percent", "BurnBudgetOver30PercentThrottle",
                "ResidencyProbeFailed", "MigrationAcaBelowThreshold", "PolicyLatencyOverheadOver5ms"}


def promtool() -> str:
    from ig_infra.go_tools import tool_path
    from ig_infra.paths import Paths

    return str(tool_path(Paths.from_environment().cache, "promtool"))


def rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def exported_metrics() -> set[str]:
    """Metric names declared with prometheus_client anywhere in the services, tools and libraries."""
    declared = re.compile(r"(?:Counter|Gauge|Histogram|Summary)\(\s*\"([a-z_:]+)\"", re.S)
    names: set[str] = set()
    for root in ("services", "tools", "libs"):
        for path in (REPO / root).rglob("*.py"):
            if "/tests/" not in str(path):
                names.update(declared.findall(path.read_text(errors="replace")))
    return names


def test_promtool_accepts_the_rules_and_every_unit_test_passes() -> None:
    checked = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run([promtool(), "test", "rules", str(TESTS)], capture_output=True, text=True, cwd=ALERTS)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_of_the_brief_exists_and_has_a_test_and_a_runbook() -> None:
    found = {rule["alert"]: rule for rule in rules()}
    assert set(found) >= BRIEF_ALERTS
    tested = {case["alertname"] for test in yaml.safe_load(TESTS.read_text())["tests"]
              for case in test.get("alert_rule_test", [])}
    assert set(found) == tested
    for name, rule in found.items():
        assert (REPO / rule["annotations"]["runbook"]).is_file(), f"{name}: runbook missing"


@pytest.mark.parametrize(("original", "mutated"), [
    ('{period="month"}) > 0.20', '{period="month"}) > 0.50'),
    ("(ig_migration_aca_score) < 0.9", "(ig_migration_aca_score) < 0.4"),
    ("min(ig_region_residency_passed) == 0", "min(ig_region_residency_passed) == 2"),
    ("> 0.005", "> 0.05"),
])
def test_the_unit_tests_catch_a_wrong_threshold(tmp_path: Path, original: str, mutated: str) -> None:
    text = RULES.read_text()
    assert original in text
    shutil.copy(TESTS, tmp_path / TESTS.name)
    (tmp_path / RULES.name).write_text(text.replace(original, mutated))
    tested = subprocess.run([promtool(), "test", "rules", TESTS.name], capture_output=True, text=True, cwd=tmp_path)
    assert tested.returncode != 0, f"the tests still pass with {mutated!r}"


def test_every_metric_a_rule_reads_is_exported_by_a_service() -> None:
    exported = exported_metrics()
    histogram_suffix = re.compile(r"_(bucket|sum|count)$")
    used = {histogram_suffix.sub("", name) for rule in rules()
            for name in re.findall(r"\b(ig_[a-z_]+)\b", rule["expr"])}
    assert used - exported == PENDING_METRICS, f"not exported by any service: {sorted(used - exported)}"
    assert not PENDING_METRICS & exported, "a pending metric is now exported: drop it from PENDING_METRICS"


@pytest.mark.integration
def test_a_real_prometheus_loading_the_rules_fires_on_a_real_scrape(infra: Any, tmp_path: Path) -> None:
    from ig_burn.devtools.harness import free_port
    from ig_infra.components.prometheus import PrivatePrometheus

    registry = CollectorRegistry()
    Gauge("ig_migration_aca_score", "canary score", ["change"], registry=registry).labels("add-asset-index-v3").set(
        0.42)
    Gauge("ig_region_residency_passed", "residency", registry=registry).set(1)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    config = (f"global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - \"{RULES}\"\n"
              f"scrape_configs:\n  - job_name: migration\n    static_configs:\n"
              f"      - targets: [\"127.0.0.1:{port}\"]\n")
    try:
        with PrivatePrometheus(infra.paths.cache, tmp_path / "prometheus", config, free_port()) as prometheus:
            deadline, firing = time.monotonic() + 60, []
            while time.monotonic() < deadline:
                with urllib.request.urlopen(f"{prometheus.url}/api/v1/alerts", timeout=5) as response:
                    alerts = json.loads(response.read())["data"]["alerts"]
                firing = [a["labels"]["alertname"] for a in alerts if a["state"] == "firing"]
                if "MigrationAcaBelowThreshold" in firing:
                    break
                time.sleep(0.5)
            assert firing == ["MigrationAcaBelowThreshold"]
            with urllib.request.urlopen(f"{prometheus.url}/api/v1/rules", timeout=5) as response:
                groups = json.loads(response.read())["data"]["groups"]
            assert all(r["health"] == "ok" for g in groups for r in g["rules"])
            assert {r["name"] for g in groups for r in g["rules"]} == {r["alert"] for r in rules()}
    finally:
        server.shutdown()
        thread.join(timeout=5)
