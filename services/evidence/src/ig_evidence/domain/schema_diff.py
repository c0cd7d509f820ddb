"""Schema snapshots (proto descriptors, SQL migrations) and their diff against the previous release."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SNAPSHOT_VERSION = "ig.evidence.schema-snapshot/v1"


def snapshot(*, proto_elements: list[str], sql_migrations: Mapping[str, str]) -> dict[str, Any]:
    """proto_elements: one line per message, field, enum value, service and rpc; sql: migration -> sha256."""
    return {"schemaVersion": SNAPSHOT_VERSION, "proto": sorted(set(proto_elements)),
            "sql": dict(sorted(sql_migrations.items()))}


def diff(previous: Mapping[str, Any] | None, current: Mapping[str, Any], *, previous_release: str) -> dict[str, Any]:
    before_proto = set(previous["proto"]) if previous else set()
    after_proto = set(current["proto"])
    before_sql: Mapping[str, str] = previous["sql"] if previous else {}
    after_sql: Mapping[str, str] = current["sql"]
    removed_proto = sorted(before_proto - after_proto)
    changed_sql = sorted(m for m in after_sql if m in before_sql and before_sql[m] != after_sql[m])
    removed_sql = sorted(set(before_sql) - set(after_sql))
    return {
        "previousRelease": previous_release if previous else None,
        "baseline": "previous release snapshot" if previous else "none (first release: everything is added)",
        "proto": {"added": sorted(after_proto - before_proto), "removed": removed_proto},
        "sql": {"added": sorted(set(after_sql) - set(before_sql)), "removed": removed_sql, "changed": changed_sql},
        # Removing a proto element or editing/removing an applied migration breaks forward-only compatibility.
        "breaking": bool(removed_proto or changed_sql or removed_sql),
    }
