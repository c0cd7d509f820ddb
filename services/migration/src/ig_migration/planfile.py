"""Plan text -> validated Plan (YAML parsing stays out of the pure domain)."""

from __future__ import annotations

from pathlib import Path

import yaml

from ig_migration.domain.plan import Plan, PlanError, plan_from_mapping


def parse_plan(text: str) -> Plan:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise PlanError([("<yaml>", f"not valid YAML{where}: {getattr(error, 'problem', error)}")]) from error
    return plan_from_mapping(document)


def read_plan(path: Path) -> tuple[Plan, str]:
    text = path.read_text(encoding="utf-8")
    return parse_plan(text), text
