"""Fixtures of the migration tests: a FRESH database per test (the orchestrator changes schemas and triggers)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest


@pytest.fixture
async def fresh_dsn(infra: object) -> AsyncIterator[str]:
    postgres = infra.postgres  # type: ignore[attr-defined]
    name = f"ig_mig_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(postgres.dsn("postgres"))
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    yield postgres.dsn(name)
    admin = await asyncpg.connect(postgres.dsn("postgres"))
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()
