"""The Grafana dashboard and the Prometheus alert rules only use metrics the burn service really exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import ig_burn.api.ofrep
import ig_burn.engine
import ig_burn.prometheus
import ig_burn.store.flags  # noqa: F401  (registers the metrics)
import pytest
import yaml
from prometheus_client import REGISTRY

ROOT = Path(__file__).resolve().parents[3]
DASHBOARD = ROOT / "services" / "burn" / "dashboards" / "burn.json"
RULES = ROOT / "charts" / "burn" / "rules" / "burn.rules.yml"
_METRIC = re.compile(r"\b(ig_[a-z_]+)")


def exported() -> set[str]:
    names = set()
    for collector in list(REGISTRY._collector_to_names):
        for metric in collector.describe() if hasattr(collector, "describe") else []:
            names.add(metric.name)
            names.update(s.name for s in metric.samples)
    for name_list in REGISTRY._collector_to_names.values():
        names.update(name_list)
    return names


def expressions_of(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [v for k, v in node.items() if k == "expr" and isinstance(v, str)]
        return found + [e for v in node.values() for e in expressions_of(v)]
    if isinstance(node, list):
        return [e for v in node for e in expressions_of(v)]
    return []


@pytest.mark.parametrize("source", ["dashboard", "rules"])
def test_every_metric_used_is_exported(source: str) -> None:
    document = json.loads(DASHBOARD.read_text()) if source == "dashboard" else yaml.safe_load(RULES.read_text())
    expressions = expressions_of(document)
    assert expressions
    used = {m for e in expressions for m in _METRIC.findall(e)}
    assert used - exported() == set()


def test_dashboard_shows_burn_throttles_and_flag_changes() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    titles = " | ".join(p["title"] for p in dashboard["panels"])
    for needed in ("Monthly error budget consumed", "Throttle state", "Flag changes", "Burn rate by window"):
        assert needed in titles
    assert {a["name"] for a in dashboard["annotations"]["list"]} == {"Throttle transitions", "Flag changes"}
