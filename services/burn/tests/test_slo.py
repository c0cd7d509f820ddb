"""SLO declarations: the OpenSLO subset is accepted, and every rejection names file, field and reason."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from ig_burn.domain.slo import SloValidationError, parse_slo_documents

VALID: dict[str, Any] = {
    "apiVersion": "openslo/v1", "kind": "SLO", "metadata": {"name": "gateway-availability"},
    "spec": {
        "service": "gateway", "budgetingMethod": "Occurrences",
        "indicator": {"metadata": {"name": "ok"}, "spec": {"ratioMetric": {
            "counter": True,
            "good": {"metricSource": {"type": "Prometheus", "spec": {"query": 'http_total{code!~"5.."}'}}},
            "total": {"metricSource": {"type": "Prometheus", "spec": {"query": "http_total"}}}}}},
        "timeWindow": [{"duration": "30d", "isRolling": True}],
        "objectives": [{"target": 0.999}],
    },
}


def with_change(path: str, value: Any) -> str:
    document = copy.deepcopy(VALID)
    *parents, last = path.split(".")
    node: Any = document
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    if value is KeyError:
        del node[last]
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return yaml.safe_dump(document)


def test_valid_declaration_parses() -> None:
    [slo] = parse_slo_documents(yaml.safe_dump(VALID), "slos/gateway.yaml")
    assert (slo.name, slo.service, slo.objective, slo.month_seconds) == ("gateway-availability", "gateway",
                                                                         0.999, 30 * 86400)
    assert slo.indicator.good == 'http_total{code!~"5.."}' and slo.indicator.bad is None
    assert slo.error_budget == pytest.approx(0.001)


def test_target_percent_and_28_day_window_are_accepted() -> None:
    text = with_change("spec.objectives", [{"targetPercent": 99.5}]).replace("30d", "28d")
    [slo] = parse_slo_documents(text, "f.yaml")
    assert slo.objective == pytest.approx(0.995) and slo.month_seconds == 28 * 86400


@pytest.mark.parametrize(("path", "value", "field", "reason"), [
    ("apiVersion", "openslo/v2", "apiVersion", "openslo/v1"),
    ("metadata.name", "Bad Name", "metadata.name", "DNS-style"),
    ("spec.service", KeyError, "spec.service", "must name the service"),
    ("spec.budgetingMethod", "Timeslices", "spec.budgetingMethod", "only Occurrences"),
    ("spec.objectives", [{"target": 1.5}], "spec.objectives[0].target", "strictly between 0 and 1"),
    ("spec.objectives", [], "spec.objectives", "exactly one"),
    ("spec.timeWindow", [{"duration": "90d", "isRolling": True}], "spec.timeWindow[0].duration", "28d-30d"),
    ("spec.timeWindow", [{"duration": "30x", "isRolling": True}], "spec.timeWindow[0].duration", "not a duration"),
    ("spec.timeWindow", [{"duration": "30d", "isRolling": False}], "spec.timeWindow[0].isRolling", "calendar"),
    ("spec.timeWindow", [{"duration": "7d", "isRolling": True}], "spec.timeWindow", "28 to 30 days"),
    ("spec.indicator.spec.ratioMetric.total", KeyError, "spec.indicator.spec.ratioMetric.total", "required"),
    ("spec.indicator.spec.ratioMetric.bad",
     {"metricSource": {"type": "Prometheus", "spec": {"query": "x"}}},
     "spec.indicator.spec.ratioMetric", "exactly one of good or bad"),
    ("spec.indicator.spec.ratioMetric.good", {"metricSource": {"type": "Datadog", "spec": {"query": "x"}}},
     "spec.indicator.spec.ratioMetric.good.metricSource.type", "only Prometheus"),
    ("spec.indicator.spec.ratioMetric.good", {"metricSource": {"spec": {"query": "http_total{code=\"5\""}}},
     "spec.indicator.spec.ratioMetric.good.metricSource.spec.query", "unbalanced"),
    ("spec.indicator.spec.ratioMetric.good", {"metricSource": {"spec": {"query": "sum(rate(x[5m]))"}}},
     "spec.indicator.spec.ratioMetric.good.metricSource.spec.query", "counter selector"),
    ("spec.indicator.spec.ratioMetric.counter", False, "spec.indicator.spec.ratioMetric.counter", "must be true"),
])
def test_invalid_declarations_name_file_field_and_reason(path: str, value: Any, field: str, reason: str) -> None:
    with pytest.raises(SloValidationError) as caught:
        parse_slo_documents(with_change(path, value), "slos/gateway.yaml")
    assert caught.value.file == "slos/gateway.yaml"
    assert caught.value.field == field
    assert reason in caught.value.reason
    assert str(caught.value).startswith(f"slos/gateway.yaml: {field}: ")


def test_broken_yaml_and_multi_document_positions() -> None:
    with pytest.raises(SloValidationError, match="not valid YAML"):
        parse_slo_documents("a: [", "x.yaml")
    second = copy.deepcopy(VALID)
    second["spec"]["service"] = 7
    with pytest.raises(SloValidationError) as caught:
        parse_slo_documents(yaml.safe_dump_all([VALID, second]), "x.yaml")
    assert caught.value.field == "[1]spec.service"


def test_window_placeholder_queries_are_accepted() -> None:
    query = "sum(rate(http_total[{{.window}}]))"
    [slo] = parse_slo_documents(with_change("spec.indicator.spec.ratioMetric.total",
                                            {"metricSource": {"spec": {"query": query}}}), "f.yaml")
    assert slo.indicator.total == query
