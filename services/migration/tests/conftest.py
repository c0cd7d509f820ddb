"""Fixtures of the migration tests: a FRESH database per test (the orchestrator changes schemas and triggers).

It is laid out like the suite's, and the tests act as the migration service's runtime role: a plan's SQL runs as
a role that owns only the target schemas (public, app), as in the suite."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest


@pytest.fixture
async def fresh_dsn(infra: object) -> AsyncIterator[str]:
    admin_url = await asyncio.to_thread(infra.new_database, "ig_mig")  # type: ignore[attr-defined]
    yield infra.service_dsn("migration", admin_url)  # type: ignore[attr-defined]
    await asyncio.to_thread(infra.drop_database, admin_url)  # type: ignore[attr-defined]
