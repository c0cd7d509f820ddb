"""Recording rules: generated from the SLOs, revision-checked when read back, and the shipped file is current."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml
from ig_burn.domain.burn import WindowScale, windows_for
from ig_burn.domain.queries import error_ratio_expression, union, windowed_ratio_promql
from ig_burn.domain.recording import (
    INFO_METRIC,
    RATIO_METRIC,
    REVISION_LABEL,
    read_recorded,
    rule_file,
    rule_revision,
)
from ig_burn.domain.slo import RatioIndicator, Slo
from ig_burn.recording_rules import main, render
from ig_burn.settings import DEFAULT_CONFIG

SHIPPED = Path(__file__).resolve().parents[3] / "charts" / "burn" / "rules" / "burn-slos.rules.yml"
A = Slo("a-availability", "a", 0.999, RatioIndicator(total="req_total", bad='req_total{code="500"}'), 30 * 86400)
B = Slo("b-availability", "b", 0.99, RatioIndicator(total="b_total", good='b_total{code="200"}'), 28 * 86400)


def test_one_group_per_slo_records_the_tick_expressions_for_every_window() -> None:
    groups = rule_file([A, B], WindowScale(), "30s")["groups"]
    assert [g["name"] for g in groups] == ["ig-burn-slo:a-availability", "ig-burn-slo:b-availability"]
    for slo, group in zip((A, B), groups, strict=True):
        assert group["interval"] == "30s"
        ratios, info = group["rules"]
        assert (ratios["record"], info["record"], info["expr"]) == (RATIO_METRIC, INFO_METRIC, "vector(1)")
        labels = {"ig_slo": slo.name, REVISION_LABEL: rule_revision(slo, WindowScale())}
        assert ratios["labels"] == info["labels"] == labels
        assert ratios["expr"] == union([windowed_ratio_promql(slo, w, WindowScale()) for w in windows_for(slo)])
        for window in windows_for(slo):
            assert f'label_replace({error_ratio_expression(slo, window, WindowScale())}, "ig_window", "{window}"' \
                in ratios["expr"]


def test_revision_follows_the_expressions() -> None:
    edited = Slo(A.name, A.service, A.objective, RatioIndicator(total="req_total", bad='req_total{code="503"}'),
                 A.month_seconds)
    assert rule_revision(A, WindowScale()) == rule_revision(A, WindowScale())
    assert rule_revision(A, WindowScale()) != rule_revision(edited, WindowScale())
    assert rule_revision(A, WindowScale()) != rule_revision(A, WindowScale(86400, 2))
    # The objective is not part of the ratio: changing it needs no new rules.
    assert rule_revision(A, WindowScale()) == rule_revision(
        Slo(A.name, A.service, 0.99, A.indicator, A.month_seconds), WindowScale())


def sample(metric: str, slo: str, revision: str, value: float = 1.0, window: str | None = None
           ) -> tuple[dict[str, str], float]:
    labels = {"__name__": metric, "ig_slo": slo, REVISION_LABEL: revision}
    if window is not None:
        labels["ig_window"] = window
    return labels, value


def test_reading_back_trusts_only_slos_whose_rules_have_the_expected_revision() -> None:
    revisions = {"a": "r1", "b": "r2", "c": "r3"}
    samples = [
        sample(INFO_METRIC, "a", "r1"), sample(RATIO_METRIC, "a", "r1", 0.01, "3600"),
        sample(RATIO_METRIC, "a", "r1", math.nan, "300"),  # no traffic: no data
        sample(RATIO_METRIC, "a", "r0", 0.5, "86400"),  # a series left from older rules
        sample(RATIO_METRIC, "a", "r1", 0.5, "not-a-window"),
        sample(INFO_METRIC, "b", "old"), sample(RATIO_METRIC, "b", "old", 0.2, "3600"),  # rules not regenerated
        sample(RATIO_METRIC, "c", "r3", 0.3, "3600"),  # ratios without the info series: not trusted
        sample(INFO_METRIC, "unknown", "r9"),
    ]
    recorded = read_recorded(samples, revisions)
    assert recorded.covered == frozenset({"a"})
    assert recorded.ratios == {("a", 3600): 0.01}


def test_shipped_rules_match_the_packaged_slos() -> None:
    assert SHIPPED.read_text() == render(DEFAULT_CONFIG, WindowScale(), "30s"), \
        "regenerate: uv run python -m ig_burn.recording_rules --out charts/burn/rules/burn-slos.rules.yml"


def test_cli_writes_a_rule_file_and_refuses_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "rules.yml"
    assert main(["--out", str(out), "--window-scale", "86400", "--min-window-seconds", "2", "--interval", "1s"]) == 0
    groups = yaml.safe_load(out.read_text())["groups"]
    assert groups and all(g["interval"] == "1s" for g in groups)
    assert "[30s]" in groups[0]["rules"][0]["expr"]
    assert main(["--interval", "soon"]) == 2
    assert "invalid --interval" in capsys.readouterr().err
    (tmp_path / "bad.yaml").write_text("apiVersion: openslo/v1\nkind: SLO\nmetadata: {name: x}\n")
    assert main(["--slo-dir", str(tmp_path)]) == 2
    assert "bad.yaml: spec: must be a mapping" in capsys.readouterr().err
