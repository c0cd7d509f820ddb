"""The charts ship their alert rules: the real helm renders one PrometheusRule per charts/<chart>/rules/*.rules.yml
whose groups equal the file's, promtool accepts what was rendered, and the switch and the CRD check work.

kubeconform: the project validates no CRD kinds (tools/k8s ig_k8s.validate.CRD_KINDS are skipped: the Kubernetes
schemas it pins have none), so the rendered rules are checked by promtool instead, which knows what a rule group is.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CHARTS = REPO / "charts"
SERVICE_CHARTS = ["audit-portal", "burn", "evidence", "migration", "policy"]
CRD = "monitoring.coreos.com/v1/PrometheusRule"


@pytest.fixture(scope="module")
def render() -> Any:
    from ig_k8s.helm import KUBE_VERSION, Helm
    from ig_k8s.suite import region_values

    helm = Helm.create()
    cache: dict[tuple[str, tuple[str, ...]], list[dict[str, Any]]] = {}

    def rendered(chart: str, *extra: str) -> list[dict[str, Any]]:
        if (chart, extra) not in cache:
            helm.dependency_build(CHARTS / chart)
            output = helm.run("template", chart, str(CHARTS / chart), "--namespace", "ig", "--kube-version",
                              KUBE_VERSION, "-f", str(region_values("region-a")), *extra)
            cache[(chart, extra)] = [d for d in yaml.safe_load_all(output) if isinstance(d, dict) and d]
        return cache[(chart, extra)]

    return rendered


def prometheus_rules(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["annotations"]["ig.maestro/rule-file"]: o for o in objects if o["kind"] == "PrometheusRule"}


@pytest.mark.parametrize("chart", SERVICE_CHARTS)
def test_each_rule_file_becomes_a_prometheus_rule_with_the_same_groups(render: Any, chart: str) -> None:
    shipped = prometheus_rules(render(chart, "--api-versions", CRD))
    files = sorted((CHARTS / chart / "rules").glob("*.rules.yml"))
    assert sorted(shipped) == [f"rules/{f.name}" for f in files]
    for rule_file in files:
        rule = shipped[f"rules/{rule_file.name}"]
        assert rule["apiVersion"] == "monitoring.coreos.com/v1"
        assert rule["metadata"]["name"] == f"{chart}-{rule_file.name.removesuffix('.rules.yml')}"
        assert rule["metadata"]["labels"]["app.kubernetes.io/part-of"] == "maestro-conductor"
        assert rule["spec"]["groups"] == yaml.safe_load(rule_file.read_text())["groups"]


@pytest.mark.parametrize("chart", ["burn", "evidence", "migration", "policy"])
def test_promtool_accepts_the_rendered_rules(render: Any, chart: str, tmp_path: Path) -> None:
    from ig_infra.go_tools import tool_path
    from ig_infra.paths import Paths

    promtool = str(tool_path(Paths.from_environment().cache, "promtool"))
    shipped = prometheus_rules(render(chart, "--api-versions", CRD))
    assert shipped
    for name, rule in shipped.items():
        target = tmp_path / Path(name).name
        target.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
        checked = subprocess.run([promtool, "check", "rules", str(target)], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_no_prometheus_rule_where_the_cluster_lacks_the_crd_or_the_switch_is_off(render: Any) -> None:
    assert prometheus_rules(render("evidence")) == {}
    assert prometheus_rules(render("evidence", "--api-versions", CRD, "--set",
                                   "metrics.prometheusRule.enabled=false")) == {}


def test_extra_labels_reach_the_prometheus_rule_selector(render: Any) -> None:
    shipped = prometheus_rules(render("migration", "--api-versions", CRD, "--set",
                                      "metrics.prometheusRule.labels.release=kube-prometheus-stack"))
    assert shipped["rules/release.rules.yml"]["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_a_broken_rule_file_fails_the_render_with_its_name(tmp_path: Path) -> None:
    """A copy of the migration chart with an unparsable rule file: helm must refuse, naming the file."""
    import shutil

    from ig_infra.process import InfraError
    from ig_k8s.helm import KUBE_VERSION, Helm

    chart = tmp_path / "migration"
    shutil.copytree(CHARTS / "migration", chart, symlinks=False, ignore=shutil.ignore_patterns("charts"))
    shutil.copytree(CHARTS / "ig-lib", tmp_path / "ig-lib")
    (chart / "rules" / "broken.rules.yml").write_text("groups: [\n")
    helm = Helm.create()
    helm.run("dependency", "build", "--skip-refresh", str(chart))
    with pytest.raises(InfraError, match=r"rules/broken\.rules\.yml"):
        helm.run("template", "migration", str(chart), "--kube-version", KUBE_VERSION, "-f",
                 str(CHARTS / "values-region-a.yaml"), "--api-versions", CRD)
