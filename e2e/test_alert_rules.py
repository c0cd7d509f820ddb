"""The alert rules shipped with the charts (charts/<chart>/rules/*.rules.yml): promtool accepts every file and its
unit tests (the *.tests.yml beside it) pass, the tests catch a wrong threshold, every metric a rule reads is one the
code really exports, and a real Prometheus loading the very files the local Prometheus loads fires an alert from a
real scrape. How the charts render the same files: e2e/test_chart_alert_rules.py."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, Gauge, start_http_server

REPO = Path(__file__).resolve().parents[1]
CHARTS = REPO / "charts"
RULE_FILES = sorted(CHARTS.glob("*/rules/*.rules.yml"))
# Read by a rule, exported by nothing yet. When it lands in the code, this test says so, and the entry must go.
PENDING_METRICS: set[str] = set()
BRIEF_ALERTS = {"EvidenceMissingArtifact", "BurnBudgetOver20Percent", "BurnBudgetOver30PercentThrottle",
                "ResidencyProbeFailed", "MigrationAcaBelowThreshold", "PolicyLatencyOverheadOver5ms"}


def promtool() -> str:
    from ig_infra.go_tools import tool_path
    from ig_infra.paths import Paths

    return str(tool_path(Paths.from_environment().cache, "promtool"))


def unit_tests_of(rule_file: Path) -> Path:
    return rule_file.with_name(rule_file.name.replace(".rules.yml", ".tests.yml"))


def rules(rule_file: Path | None = None) -> list[dict[str, Any]]:
    return [rule for path in ([rule_file] if rule_file else RULE_FILES)
            for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]


def alerts(rule_file: Path | None = None) -> list[dict[str, Any]]:
    return [rule for rule in rules(rule_file) if "alert" in rule]


def label(path: Path) -> str:
    return str(path.relative_to(CHARTS))


def exported_metrics() -> set[str]:
    """Metric names declared with prometheus_client anywhere in the services, tools and libraries."""
    declared = re.compile(r"(?:Counter|Gauge|Histogram|Summary)\(\s*\"([a-z_:]+)\"", re.S)
    names: set[str] = set()
    for root in ("services", "tools", "libs"):
        for path in (REPO / root).rglob("*.py"):
            if "/tests/" not in str(path):
                names.update(declared.findall(path.read_text(errors="replace")))
    return names


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_charts_ship_rule_files_and_no_rule_lives_twice() -> None:
    assert {path.parent.parent.name for path in RULE_FILES} >= {"burn", "evidence", "migration", "policy"}
    names = [rule["alert"] for rule in alerts()]
    assert len(names) == len(set(names)), "an alert is defined in two rule files"
    groups = [g["name"] for path in RULE_FILES for g in yaml.safe_load(path.read_text())["groups"]]
    assert len(groups) == len(set(groups)), "two rule files use the same group name"
    leftovers = sorted(str(p.relative_to(REPO)) for p in (REPO / "deploy").rglob("*.yml")) if (
        REPO / "deploy").exists() else []
    assert leftovers == [], f"rule files outside the charts: {leftovers}"


@pytest.mark.parametrize("rule_file", RULE_FILES, ids=label)
def test_promtool_accepts_the_rules_and_every_unit_test_passes(rule_file: Path) -> None:
    checked = subprocess.run([promtool(), "check", "rules", str(rule_file)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert unit_tests_of(rule_file).is_file(), f"{label(rule_file)} has no promtool unit tests beside it"
    tested = subprocess.run([promtool(), "test", "rules", unit_tests_of(rule_file).name], capture_output=True,
                            text=True, cwd=rule_file.parent)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


@pytest.mark.parametrize("rule_file", RULE_FILES, ids=label)
def test_every_rule_has_a_unit_test(rule_file: Path) -> None:
    spec = yaml.safe_load(unit_tests_of(rule_file).read_text())
    assert spec["rule_files"] == [rule_file.name]
    tested = {case["alertname"] for test in spec["tests"] for case in test.get("alert_rule_test", [])}
    assert {rule["alert"] for rule in alerts(rule_file)} == tested


def test_every_alert_of_the_brief_exists_with_a_runbook() -> None:
    found = {rule["alert"]: rule for rule in alerts()}
    assert set(found) >= BRIEF_ALERTS
    for name in BRIEF_ALERTS:
        assert (REPO / found[name]["annotations"]["runbook"]).is_file(), f"{name}: runbook missing"


@pytest.mark.parametrize(("rule_file", "original", "mutated"), [
    ("burn/rules/release.rules.yml", '{period="month"}) > 0.20', '{period="month"}) > 0.50'),
    ("burn/rules/release.rules.yml", '{period="month"}) > 0.30', '{period="month"}) > 0.40'),
    ("burn/rules/burn.rules.yml", '{period="month"} > 0.20', '{period="month"} >= 0.20'),
    ("burn/rules/burn.rules.yml", '{window="5m"} > 14.4', '{window="5m"} >= 14.4'),
    ("migration/rules/release.rules.yml", "(ig_migration_aca_score) < 0.9", "(ig_migration_aca_score) < 0.4"),
    ("evidence/rules/region.rules.yml", "min(ig_region_residency_passed) == 0", "min(ig_region_residency_passed) == 2"),
    ("evidence/rules/region.rules.yml", "(ig_region_failover_rto_seconds) > 10",
     "(ig_region_failover_rto_seconds) >= 10"),
    ("evidence/rules/release.rules.yml", "(ig_evidence_release_missing_artifacts) > 0",
     "(ig_evidence_release_missing_artifacts) > 2"),
    ("policy/rules/release.rules.yml", "> 0.005", "> 0.05"),
])
def test_the_unit_tests_catch_a_wrong_threshold(tmp_path: Path, rule_file: str, original: str, mutated: str) -> None:
    source = CHARTS / rule_file
    text = source.read_text()
    assert original in text
    shutil.copy(unit_tests_of(source), tmp_path / unit_tests_of(source).name)
    (tmp_path / source.name).write_text(text.replace(original, mutated))
    tested = subprocess.run([promtool(), "test", "rules", unit_tests_of(source).name], capture_output=True, text=True,
                            cwd=tmp_path)
    assert tested.returncode != 0, f"the tests still pass with {mutated!r}"


def test_every_metric_a_rule_reads_is_exported_by_the_code() -> None:
    exported = exported_metrics()
    histogram_suffix = re.compile(r"_(bucket|sum|count)$")
    used = {histogram_suffix.sub("", name) for rule in rules()
            for name in re.findall(r"\b(ig_[a-z_]+)\b", rule["expr"])}
    assert used - exported == PENDING_METRICS, f"not exported by anything: {sorted(used - exported)}"
    assert not PENDING_METRICS & exported, "a pending metric is now exported: drop it from PENDING_METRICS"


def local_prometheus_rule_files(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The rule_files of the config ig-infra renders for the shared (`make up`) Prometheus."""
    from ig_infra.components.prometheus import Prometheus
    from ig_infra.paths import Paths

    monkeypatch.setenv("IG_RUN_DIR", str(run_dir))
    files: list[str] = yaml.safe_load(Prometheus(Paths.from_environment()).render_config().read_text())["rule_files"]
    return files


def test_the_local_prometheus_loads_exactly_the_chart_rule_files(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    patterns = local_prometheus_rule_files(tmp_path, monkeypatch)
    loaded = sorted(Path(match) for pattern in patterns for match in map(str, Path("/").glob(pattern.lstrip("/"))))
    assert loaded == RULE_FILES


@pytest.mark.integration
def test_a_real_prometheus_loading_the_rules_fires_on_a_real_scrape(infra: Any, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from ig_infra.components.prometheus import PrivatePrometheus

    rule_files = local_prometheus_rule_files(tmp_path / "shared", monkeypatch)
    registry = CollectorRegistry()
    Gauge("ig_migration_aca_score", "canary score", ["change"], registry=registry).labels("add-asset-index-v3").set(
        0.42)
    Gauge("ig_region_residency_passed", "residency", registry=registry).set(1)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"}, "rule_files": rule_files,
              "scrape_configs": [{"job_name": "migration", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}]}
    try:
        with PrivatePrometheus(infra.paths.cache, tmp_path / "prometheus", yaml.safe_dump(config),
                               free_port()) as prometheus:
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
            assert {r["name"] for g in groups for r in g["rules"]} == {r.get("alert") or r["record"] for r in rules()}
            assert {Path(g["file"]) for g in groups} == set(RULE_FILES)
    finally:
        server.shutdown()
        thread.join(timeout=5)
