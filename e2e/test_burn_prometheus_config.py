"""The shared Prometheus config (rendered by ig-infra) and the burn alert rules pass promtool, and the rendered
config scrapes every service's /metrics on its documented port."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from ig_infra.components.prometheus import Prometheus
from ig_infra.go_tools import tool_path
from ig_infra.paths import Paths
from ig_infra.services import SERVICES

pytestmark = pytest.mark.integration


def test_rendered_config_and_rules_pass_promtool(infra: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IG_RUN_DIR", str(tmp_path))
    component = Prometheus(Paths.from_environment())
    config = component.render_config()
    promtool = str(tool_path(infra.paths.cache, "promtool"))
    checked = subprocess.run([promtool, "check", "config", str(config)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "burn.rules.yml" in checked.stdout and "2 rules found" in checked.stdout
    jobs = {job["job_name"]: job for job in yaml.safe_load(config.read_text())["scrape_configs"]}
    ports = {name: jobs[name]["static_configs"][0]["targets"][0] for name in
             ("audit-portal", "policy", "evidence", "burn", "migration")}
    # Each service is scraped where its /metrics is: its health port (the portal's is not its browser port).
    assert ports == {spec.name: f"127.0.0.1:{spec.health_port}" for spec in SERVICES}
    assert ports["audit-portal"] == "127.0.0.1:8085"
    target = component.add_exporter("synthetic", "127.0.0.1:9101")
    assert target.parent == component.targets_dir
    assert str(component.targets_dir) in jobs["exporters"]["file_sd_configs"][0]["files"][0]
