"""The plan file: the example validates; every kind of bad plan is rejected naming the field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ig_migration.domain.plan import PlanError, plan_from_mapping
from ig_migration.planfile import parse_plan

EXAMPLE = Path(__file__).parents[1] / "plans" / "add-asset-index-v3.yaml"


def example() -> dict[str, object]:
    document = yaml.safe_load(EXAMPLE.read_text())
    assert isinstance(document, dict)
    return document


def test_example_plan_is_valid() -> None:
    plan = parse_plan(EXAMPLE.read_text())
    assert plan.change == "add-asset-index-v3" and plan.backout == "revert-index-v2"
    assert plan.aca is not None and plan.aca.threshold == 0.9
    assert [m.critical for m in plan.aca.metrics] == [True, True, False]


def _set(document: dict[str, object], path: str, value: object) -> None:
    *parents, last = path.split(".")
    node: object = document
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]  # type: ignore[index]
    if value is ...:
        del node[last]  # type: ignore[union-attr]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value  # type: ignore[index]


BAD = [
    ("strategy", "big-bang", "strategy", "blue-green"),
    ("change", "Add Index!", "change", "pattern"),
    ("batch.size", 0, "batch.size", "greater than or equal to 1"),
    ("checks", ["load", "coffee"], "checks.1", "slo-headroom"),
    ("green.steps.1.sql", "CREATE INDEX i ON {green} (owner)", "green.steps.1.sql", "CONCURRENTLY"),
    ("green.table", "public.assets", "<plan>" , "green.table must differ"),
    ("aca.metrics.0.query", "", "aca.metrics.0", "query is required"),
    ("aca.metrics.2.query", "SELECT 1", "aca.metrics.2", "{table}"),
    ("aca.threshold", 1.5, "aca.threshold", "less than or equal to 1"),
    ("cutover", ..., "cutover", "Field required"),
    ("entity.selector", "true; DROP TABLE assets", "entity.selector", "single SQL predicate"),
    ("blue.colour", "blue", "blue.colour", "Extra inputs"),
]


@pytest.mark.parametrize(("path", "value", "field", "reason"), BAD, ids=[b[0] for b in BAD])
def test_bad_plan_names_the_field(path: str, value: object, field: str, reason: str) -> None:
    document = example()
    _set(document, path, value)
    with pytest.raises(PlanError) as caught:
        plan_from_mapping(document)
    fields = dict(caught.value.fields)
    assert field in fields, fields
    assert reason in fields[field]


def test_aca_required_when_checked() -> None:
    document = example()
    del document["aca"]
    with pytest.raises(PlanError) as caught:
        plan_from_mapping(document)
    assert "aca: required" in str(caught.value)


def test_cli_validate_names_the_field(tmp_path: Path) -> None:
    document = example()
    _set(document, "batch.size", -5)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(document))
    result = subprocess.run([sys.executable, "-m", "ig_migration.cli", "validate", str(bad)], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 2
    assert "batch.size: Input should be greater than or equal to 1" in result.stderr
    good = subprocess.run([sys.executable, "-m", "ig_migration.cli", "validate", str(EXAMPLE)], capture_output=True,
                          text=True, check=False)
    assert good.returncode == 0 and "is valid" in good.stdout


def test_yaml_syntax_error_is_reported_with_position() -> None:
    with pytest.raises(PlanError) as caught:
        parse_plan("change: [unclosed\n")
    assert "<yaml>" in dict(caught.value.fields)
