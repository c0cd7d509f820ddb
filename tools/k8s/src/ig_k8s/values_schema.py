"""Each chart's values.schema.json, generated from its values.yaml: helm checks the values against it on lint,
template, install and upgrade, so a misspelt key or a value of the wrong type fails before anything renders.

The rule: a key with a ``# --`` description is a value (values_docs.py) and its default gives its type; a mapping
of such values without a description of its own (``ports``, ``probes``, ``persistence`` ...) is the chart's own
structure, so a key it does not know is refused ("additional properties"). A value whose default is a mapping
(``nodeSelector``, ``securityContext`` ...) is Kubernetes' or the user's, and stays open. ``global`` stays open
too (the region files set keys for every chart of the suite, not all of them this chart's), and so does
``resources.*``. Which value must be set, or one of two (``database.url`` or ``global.database.url``), the
templates decide with a message (``required``/``fail``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from ig_k8s.values_docs import documented_values

SCHEMA_FILE = "values.schema.json"
# Strings that users also write as numbers (quantities, percentages): a number there is no mistake.
STRING_OR_NUMBER = {"type": ["string", "number"]}
ENUMS: dict[str, list[str]] = {
    "logLevel": ["DEBUG", "INFO", "WARNING", "ERROR"],
    "image.pullPolicy": ["Always", "IfNotPresent", "Never"],
    "service.type": ["ClusterIP", "NodePort", "LoadBalancer"],
}
# Values a chart cannot do without and that have no region-wide fallback: an empty one is refused.
NON_EMPTY = ("image.repository", "database.role", "database.migratorRole", "database.secretKey",
             "database.migrationSecretKey", "authz.mountPath", "tls.mountPath", "tenantResidency.mountPath")
# Open although undescribed: the region-wide values, and Kubernetes' resource lists (ephemeral-storage, hugepages-*).
OPEN_STRUCTURES = ("global", "resources", "resources.requests", "resources.limits")
# Helm hands every dependency its values under its name (the library chart has none, but the key exists).
DEPENDENCIES = ("ig-lib",)


def _leaf(path: str, default: Any, description: str) -> dict[str, Any]:
    schema: dict[str, Any]
    if isinstance(default, bool):
        schema = {"type": "boolean"}
    elif isinstance(default, int):
        schema = {"type": "integer"}
    elif isinstance(default, float):
        schema = {"type": "number"}
    elif isinstance(default, str):
        schema = dict(STRING_OR_NUMBER)
    elif isinstance(default, list):
        schema = {"type": "array"}
    elif isinstance(default, dict):
        schema = {"type": "object"}
    else:
        schema = {}
    if path in ENUMS:
        schema = {"type": "string", "enum": ENUMS[path]}
    if path == "image.tag":
        schema["not"] = {"const": "latest"}
    if path in NON_EMPTY:
        schema = {"type": "string", "minLength": 1}
    if description:
        schema["description"] = description
    return schema


def chart_schema(values_yaml: str, title: str) -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load(values_yaml) or {}
    described = {value.path: value.description for value in documented_values(values_yaml)}

    def build(node: dict[str, Any], prefix: str) -> dict[str, Any]:
        properties = {}
        for key, default in node.items():
            path = f"{prefix}{key}"
            if path in described or not isinstance(default, dict) or not default:
                properties[key] = _leaf(path, default, described.get(path, ""))
            else:
                properties[key] = build(default, f"{path}.")
        return {"type": "object", "properties": properties,
                "additionalProperties": prefix.rstrip(".") in OPEN_STRUCTURES}

    schema = {"$schema": "http://json-schema.org/draft-07/schema#", "title": f"{title} chart values",
              **build(values, "")}
    schema["properties"].update({name: {"type": "object"} for name in DEPENDENCIES})
    return schema


def render(chart: Path) -> str:
    schema = chart_schema((chart / "values.yaml").read_text(), chart.name)
    return json.dumps(schema, indent=2, sort_keys=False) + "\n"


def stale_schemas(charts: list[Path]) -> list[Path]:
    return [chart / SCHEMA_FILE for chart in charts
            if not (chart / SCHEMA_FILE).exists() or (chart / SCHEMA_FILE).read_text() != render(chart)]
