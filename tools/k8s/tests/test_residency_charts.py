"""The charts of the services that store or serve a tenant's data (evidence, audit-portal) never deploy without the
tenants' residency pins: the policy data (policies/rego/ig/config/data.json, the document the policy chart's OPA
loads) is rendered into a ConfigMap, mounted read-only and named by IG_TENANT_RESIDENCY_FILE; rendering without it
fails naming what is missing, and no `settings` entry can empty the variable. Pure renders (helm template)."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ig_common.residency import residency_from_policy_data
from ig_infra.paths import REPO_ROOT
from ig_infra.process import InfraError
from ig_k8s.helm import Helm
from ig_k8s.suite import CHARTS_DIR, REGIONS

Render = Callable[..., list[dict[str, Any]]]
POLICY_DATA = REPO_ROOT / "policies" / "rego" / "ig" / "config" / "data.json"
GATED = ("evidence", "audit-portal")


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def named(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    [found] = [o for o in of_kind(objects, kind) if o["metadata"]["name"] == name]
    return found


def pod(objects: list[dict[str, Any]]) -> dict[str, Any]:
    [deployment] = [d for d in of_kind(objects, "Deployment") if "witness" not in d["metadata"]["name"]]
    spec: dict[str, Any] = deployment["spec"]["template"]
    return spec


@pytest.mark.parametrize("region", REGIONS)
@pytest.mark.parametrize("chart", GATED)
def test_the_policy_residency_data_is_mounted_and_named_by_ig_tenant_residency_file(
        render: Render, chart: str, region: str) -> None:
    objects = render(chart, region)
    data = named(objects, "ConfigMap", f"{chart}-residency")["data"]
    assert data == {"data.json": POLICY_DATA.read_text()}
    settings = named(objects, "ConfigMap", f"{chart}-settings")["data"]
    assert settings["IG_TENANT_RESIDENCY_FILE"] == "/etc/ig/residency/data.json"
    assert settings["IG_REGION"] == region
    template = pod(objects)
    volume = next(v for v in template["spec"]["volumes"] if v["name"] == "tenant-residency")
    assert volume["configMap"] == {"name": f"{chart}-residency", "items": [{"key": "data.json", "path": "data.json"}]}
    container = next(c for c in template["spec"]["containers"] if c["name"] == chart)
    assert {"name": "tenant-residency", "mountPath": "/etc/ig/residency", "readOnly": True} in \
        container["volumeMounts"]
    # The file is read at start-up: changed pins roll the pods.
    assert template["metadata"]["annotations"]["checksum/tenant-residency"] == \
        hashlib.sha256(POLICY_DATA.read_bytes()).hexdigest()
    # What the service will read: alpha is pinned to region-a, so region-b's release refuses it.
    pins = residency_from_policy_data(data["data.json"], settings["IG_REGION"])
    assert (pins.refusal("alpha") is None) is (region == "region-a")


@pytest.mark.parametrize("chart", GATED)
def test_each_gated_chart_ships_the_policy_data_through_a_link_not_a_copy(chart: str) -> None:
    link = CHARTS_DIR / chart / "residency"
    assert link.is_symlink(), "a copy would drift from the data the policy's OPA loads"
    assert (link / "data.json").samefile(POLICY_DATA)


@pytest.mark.parametrize("chart", GATED)
def test_an_existing_config_map_replaces_the_chart_copy(render: Render, chart: str) -> None:
    objects = render(chart, "region-b", ("tenantResidency.existingConfigMap=pins-from-the-bundle",))
    assert [o for o in of_kind(objects, "ConfigMap") if o["metadata"]["name"] == f"{chart}-residency"] == []
    volume = next(v for v in pod(objects)["spec"]["volumes"] if v["name"] == "tenant-residency")
    assert volume["configMap"]["name"] == "pins-from-the-bundle"
    assert named(objects, "ConfigMap", f"{chart}-settings")["data"]["IG_TENANT_RESIDENCY_FILE"] == \
        "/etc/ig/residency/data.json"


def chart_copy(tmp_path: Path, chart: str) -> Path:
    """The chart and the library chart copied (links followed) without the chart's residency link."""
    shutil.copytree(CHARTS_DIR / "ig-lib", tmp_path / "ig-lib")
    shutil.copytree(CHARTS_DIR / chart, tmp_path / chart, ignore=shutil.ignore_patterns("residency", "charts"))
    return tmp_path / chart


@pytest.mark.parametrize("chart", GATED)
def test_rendering_without_the_residency_data_fails_naming_it(helm: Helm, tmp_path: Path, chart: str) -> None:
    copy = chart_copy(tmp_path, chart)
    with pytest.raises(InfraError, match=rf"chart {chart} has no residency/data\.json"):
        helm.template(copy, "region-a", release=chart)
    (copy / "residency").mkdir()
    (copy / "residency" / "data.json").write_text('["not", "the policy data"]')
    with pytest.raises(InfraError, match=r"residency/data\.json is not the policy data"):
        helm.template(copy, "region-a", release=chart)
    (copy / "residency" / "data.json").write_text(POLICY_DATA.read_text())
    helm.template(copy, "region-a", release=chart)  # the same copy renders once the data is there


@pytest.mark.parametrize("chart", GATED)
def test_no_setting_can_empty_the_residency_file(helm: Helm, chart: str) -> None:
    for sets in (("settings.IG_TENANT_RESIDENCY_FILE=",), ("global.settings.IG_TENANT_RESIDENCY_FILE=/dev/null",)):
        with pytest.raises(InfraError, match="IG_TENANT_RESIDENCY_FILE is not settable"):
            helm.template(CHARTS_DIR / chart, "region-a", release=chart, sets=sets)


@pytest.mark.parametrize("chart", GATED)
def test_a_missing_region_fails_rendering(helm: Helm, chart: str) -> None:
    with pytest.raises(InfraError, match="region is required"):
        helm.template(CHARTS_DIR / chart, "region-a", release=chart, sets=("global.region=",))
