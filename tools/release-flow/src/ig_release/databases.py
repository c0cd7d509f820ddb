"""Databases the flow owns on the suite's PostgreSQL (demo data, the private burn service's state), each laid out
as the suite's are, so that what runs there runs as a service's own roles."""

from __future__ import annotations

import asyncpg

from ig_release.settings import Endpoints


async def recreate_for_service(endpoints: Endpoints, name: str, service: str) -> dict[str, str]:
    """Drop ``name`` and lay it out as the suite's databases are (each service's schema owned by its migrator
    role); returns the ``IG_DATABASE_URL`` (runtime role) and ``IG_MIGRATION_DATABASE_URL`` that ``service`` runs
    with there. The flow's private burn service is never the superuser, just as in `make up`."""
    from ig_infra.components.postgres import Postgres
    from ig_infra.paths import Paths

    admin = await asyncpg.connect(endpoints.database("postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
    postgres = Postgres(Paths.from_environment())
    postgres.provision(name)
    return postgres.service_env(service, name)
