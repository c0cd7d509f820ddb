"""pytest fixtures for tests that talk to the real infrastructure started by ``ig-infra up``.

Each test session gets its own PostgreSQL database (dropped at the end), laid out like the suite's: every
service's schema owned by its migrator role. ``database_url`` is the superuser's DSN for it (tests that inspect or
tamper with tables); a service a test starts gets its own roles with ``infra.env(database_url, "<service>")`` or
``infra.database_env("<service>", database_url)``. Kafka topics are shared and keep earlier runs' traffic, so
tests that consume read from the moment they acted (``ig_infra.kafka_reading.consumer_at``).
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from ig_infra.components import Identities, Kafka, Opa, Postgres
from ig_infra.components.postgres import database_of
from ig_infra.paths import Paths
from ig_infra.services import tenant_residency_env


@dataclass(frozen=True)
class Infra:
    paths: Paths
    identities: Identities
    postgres: Postgres
    kafka: Kafka
    opa: Opa

    def env(self, database_url: str, service: str | None = None) -> dict[str, str]:
        """What a service started by a test needs: its certificate (found in IG_IDENTITIES by its service name),
        Kafka, OPA and a database: the superuser's ``database_url`` itself, or, naming ``service``, that service's
        runtime and migrator roles in the same database."""
        database = self.database_env(service, database_url) if service else {"IG_DATABASE_URL": database_url}
        return {**self.identities.env(), **self.kafka.env(), **self.opa.env(), **tenant_residency_env(self.paths),
                **database}

    def database_env(self, service: str, database_url: str) -> dict[str, str]:
        """``IG_DATABASE_URL`` (runtime role) and ``IG_MIGRATION_DATABASE_URL`` (schema owner) of ``service``."""
        return self.postgres.service_env(service, database_of(database_url))

    def service_dsn(self, service: str, database_url: str, *, migrator: bool = False) -> str:
        return self.postgres.service_dsn(service, database_of(database_url), migrator=migrator)

    def new_database(self, prefix: str = "ig_test") -> str:
        """A fresh database laid out like the suite's; returns the superuser's DSN for it."""
        name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.postgres.provision(name)
        return self.postgres.dsn(name)

    def oidc_issuer(self) -> str:
        """The shared Dex's issuer URL, started when it is not running (the release flow signs its auditor in)."""
        from ig_infra.components import Dex

        dex = Dex(self.paths)
        if not dex.healthy():
            dex.install()
            dex.start()
        return str(dex.issuer)

    def drop_database(self, database_url: str) -> None:
        self.postgres.admin_sql(f'DROP DATABASE IF EXISTS "{database_of(database_url)}" WITH (FORCE)',
                                transaction=False)


@pytest.fixture(scope="session")
def infra() -> Infra:
    paths = Paths.from_environment()
    found = Infra(paths, Identities(paths), Postgres(paths), Kafka(paths), Opa(paths))
    # Identities first: Kafka's listener, PostgreSQL's certificate and every client's login come from the same CA.
    for component in (found.identities, found.postgres, found.kafka, found.opa):
        if not component.healthy():
            component.install()
            component.start()
    found.kafka.create_topics(_all_topics())
    # The test process is a client too (as "release", "operator", ... via ig_common.grpc_client.channel_as), and so
    # is every tool a test runs with this environment.
    os.environ.update(found.identities.env())
    return found


def _all_topics() -> list[str]:
    from ig_common.events.topics import ALL_TOPICS

    return list(ALL_TOPICS)


@pytest.fixture(scope="session")
def database_url(infra: Infra) -> Iterator[str]:
    """A fresh database for this test session: the superuser's DSN (see the module's docstring for services')."""
    url = infra.new_database()
    yield url
    infra.drop_database(url)


@pytest.fixture(scope="session")
def kafka_bootstrap(infra: Infra) -> str:
    return infra.kafka.bootstrap


@pytest.fixture(scope="session")
def python() -> str:
    return sys.executable
