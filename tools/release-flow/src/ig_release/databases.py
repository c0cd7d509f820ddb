"""Databases the flow owns on the suite's PostgreSQL (demo data, the private burn service's state)."""

from __future__ import annotations

import asyncpg

from ig_release.settings import Endpoints


async def recreate(endpoints: Endpoints, name: str) -> str:
    """Drop and create ``name``, so a second `make up` runs on clean demo data; returns its DSN."""
    admin = await asyncpg.connect(endpoints.database("postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return endpoints.database(name)
