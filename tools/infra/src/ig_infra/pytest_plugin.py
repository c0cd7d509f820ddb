"""pytest fixtures for tests that talk to the real infrastructure started by ``ig-infra up``.

Each test session gets its own PostgreSQL database (dropped at the end); Kafka topics are shared and keep earlier
runs' traffic, so tests that consume read from the moment they acted (``ig_infra.kafka_reading.consumer_at``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from ig_infra.components import Identities, Kafka, Opa, Postgres
from ig_infra.paths import Paths


@dataclass(frozen=True)
class Infra:
    paths: Paths
    identities: Identities
    postgres: Postgres
    kafka: Kafka
    opa: Opa

    def env(self, database_url: str) -> dict[str, str]:
        """What a service started by a test needs: its certificate comes from IG_IDENTITIES by its service name."""
        return {**self.identities.env(), **self.kafka.env(), **self.opa.env(), "IG_DATABASE_URL": database_url}


@pytest.fixture(scope="session")
def infra() -> Infra:
    paths = Paths.from_environment()
    found = Infra(paths, Identities(paths), Postgres(paths), Kafka(paths), Opa(paths))
    # Identities first: Kafka's listener and its clients (the tests' readers among them) present their certificates.
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
    """A fresh database for this test session."""
    name = f"ig_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = [*_psql(infra), "-d", "postgres", "-c"]
    subprocess.run([*admin, f"CREATE DATABASE {name}"], check=True, capture_output=True)
    yield infra.postgres.dsn(name)
    subprocess.run([*admin, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], capture_output=True)


def _psql(infra: Infra) -> list[str]:
    from ig_infra.components.postgres import DB_USER, find_bin_dir

    bin_dir = find_bin_dir()
    assert bin_dir is not None
    return [str(bin_dir / "psql"), "-h", infra.postgres.host, "-p", str(infra.postgres.port), "-U", DB_USER, "-q"]


@pytest.fixture(scope="session")
def kafka_bootstrap(infra: Infra) -> str:
    return infra.kafka.bootstrap


@pytest.fixture(scope="session")
def python() -> str:
    return sys.executable
