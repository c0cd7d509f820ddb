"""Shared by the migration tests: plan variants, settings, catalog checks."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import asyncpg
import yaml
from ig_common.tls import inherited_identity
from ig_migration.settings import Settings

EXAMPLE = Path(__file__).parents[1] / "plans" / "add-asset-index-v3.yaml"


def plan_yaml(**changes: Any) -> str:
    """The example plan with dotted-path overrides, e.g. plan_yaml(**{"batch.size": 1000})."""
    document = yaml.safe_load(EXAMPLE.read_text())
    for path, value in changes.items():
        *parents, last = path.split(".")
        node = document
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return str(yaml.safe_dump(document, sort_keys=False))


def settings(dsn: str, artifacts: Path, **extra: Any) -> Settings:
    values: dict[str, Any] = {"slo_headroom": 0.8, **extra}
    return Settings(database_url=dsn, kafka_bootstrap=os.environ.get("IG_KAFKA_BOOTSTRAP", "127.0.0.1:59092"),
                    migration_artifacts_dir=artifacts, **values)


def migrator_dsn(dsn: str) -> str:
    """The migration schema owner's DSN beside the runtime role's (same certificate, same database)."""
    return dsn.replace("//ig_migration@", "//ig_migration_migrator@", 1)


def cli_env(dsn: str, artifacts: Path, **extra: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "IG_DATABASE_URL": dsn,
            "IG_MIGRATION_DATABASE_URL": migrator_dsn(dsn),
            "IG_KAFKA_BOOTSTRAP": os.environ.get("IG_KAFKA_BOOTSTRAP", "127.0.0.1:59092"), "IG_SLO_HEADROOM": "0.8",
            "IG_MIGRATION_ARTIFACTS_DIR": str(artifacts),
            # The CLI's settings need the authorization table since 0327e5b (until main moves it off the CLI).
            **inherited_identity(), **extra}


CLI = [sys.executable, "-m", "ig_migration.cli"]


async def triggers_on(conn: asyncpg.Connection, table: str) -> list[str]:
    return [r["tgname"] for r in await conn.fetch(
        "SELECT tgname FROM pg_trigger WHERE tgrelid = $1::regclass AND NOT tgisinternal", table)]
