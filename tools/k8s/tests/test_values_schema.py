"""Each chart's values.schema.json: generated from values.yaml (no drift), and helm really refuses values it does
not describe: an unknown key, a wrong type, a value outside its enum, an empty required name, the `latest` tag."""

from __future__ import annotations

import pytest
from ig_infra.process import InfraError
from ig_k8s.helm import Helm
from ig_k8s.suite import CHARTS_DIR, SERVICES
from ig_k8s.values_schema import SCHEMA_FILE, render, stale_schemas

CHARTS = [service.chart_dir for service in SERVICES]


def test_every_chart_ships_its_generated_schema() -> None:
    assert all((chart / SCHEMA_FILE).exists() for chart in CHARTS)
    assert stale_schemas(CHARTS) == [], "run `uv run ig-k8s values-schema`"


@pytest.mark.parametrize(("sets", "message"), [
    (("replicas=3",), r"additional properties 'replicas' not allowed"),
    (("persistence.sizee=1Gi",), r"additional properties 'sizee' not allowed"),
    (("replicaCount=two",), r"replicaCount.*(expected integer|got string)"),
    (("autoscaling.enabled=yes",), r"autoscaling.enabled.*(expected boolean|got string)"),
    (("logLevel=LOUD",), r"logLevel.*(must be one of|value must be one of)"),
    (("database.role=",), r"database.role.*(minLength|length must be >= 1)"),
    (("image.tag=latest",), r"image.tag"),
])
def test_helm_refuses_values_the_schema_does_not_allow(helm: Helm, sets: tuple[str, ...], message: str) -> None:
    with pytest.raises(InfraError, match=message):
        helm.template(CHARTS_DIR / "evidence", "region-a", release="evidence", sets=sets)


def test_region_wide_and_kubernetes_owned_values_stay_open(helm: Helm) -> None:
    """`global` carries keys of other charts; nodeSelector and friends are Kubernetes' own shapes."""
    helm.template(CHARTS_DIR / "burn", "region-a", release="burn",
                  sets=("global.oidc.issuer=https://dex.example/dex", "nodeSelector.disk=ssd",
                        "resources.limits.ephemeral-storage=1Gi", "podDisruptionBudget.maxUnavailable=1"))


def test_a_schema_describes_each_value_with_its_readme_text() -> None:
    import json

    schema = json.loads(render(CHARTS_DIR / "evidence"))
    persistence = schema["properties"]["persistence"]
    assert persistence["additionalProperties"] is False
    assert "ReadWriteMany" in persistence["properties"]["accessModes"]["description"]
