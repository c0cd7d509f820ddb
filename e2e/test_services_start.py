"""Each service starts as a real process: health over mTLS, /metrics, its schema migrated; reflection off; bad
settings (a missing certificate among them) stop it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from ig_common.grpc_client import channel_as
from ig_infra.process import free_port
from ig_infra.services import grpc_healthy

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Service:
    name: str
    module: str
    schema: str
    grpc: bool
    # /healthz and /metrics on IG_HEALTH_PORT, apart from the application's IG_HTTP_PORT (the browser-facing portal)
    separate_health: bool = False


SERVICES = [
    Service("policy", "ig_policy.app", "policy", True),
    Service("evidence", "ig_evidence.app", "evidence", True),
    Service("burn", "ig_burn.app", "burn", True),
    Service("migration", "ig_migration.app", "migration", True),
    Service("audit-portal", "ig_portal.app", "portal", False, separate_health=True),
]



def http_get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=2) as response:
        return response.status, response.read()


@pytest.fixture(params=SERVICES, ids=[s.name for s in SERVICES])
def running(request: pytest.FixtureRequest, infra: object,
            database_url: str) -> Iterator[tuple[Service, int, int, int]]:
    service: Service = request.param
    http_port, grpc_port = free_port(), free_port()
    health_port = free_port() if service.separate_health else http_port
    env = {**infra.env(database_url, service.name), "IG_HTTP_PORT": str(http_port), "IG_GRPC_PORT": str(grpc_port),  # type: ignore[attr-defined]
           "IG_HEALTH_PORT": str(health_port) if service.separate_health else "",
           "IG_AUTHZEN_PORT": str(free_port()), "IG_FORWARD_AUTH_PORT": str(free_port()),
           "IG_API_PORT": str(free_port()), "IG_PUBLIC_PORT": str(free_port()),
           "PATH": "/usr/bin:/bin"}
    env = {name: value for name, value in env.items() if value}
    process = subprocess.Popen([sys.executable, "-m", service.module], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if http_get(f"http://127.0.0.1:{health_port}/healthz")[0] == 200:
                break
        except OSError:
            if process.poll() is not None:
                pytest.fail(f"{service.name} exited: {process.stdout.read() if process.stdout else ''}")
            time.sleep(0.2)
    else:
        process.kill()
        pytest.fail(f"{service.name} did not become healthy")
    yield service, http_port, health_port, grpc_port
    process.terminate()
    assert process.wait(timeout=20) == 0, "a SIGTERM must stop the service cleanly"


def test_service_serves_health_metrics_and_migrates(running: tuple[Service, int, int, int], database_url: str,
                                                   infra: object, monkeypatch: pytest.MonkeyPatch) -> None:
    service, http_port, health_port, grpc_port = running
    status, body = http_get(f"http://127.0.0.1:{health_port}/metrics")
    assert status == 200 and b"python_info" in body
    if service.separate_health:
        # what browsers reach serves neither probes nor metrics
        for path in ("/healthz", "/metrics"):
            with pytest.raises(urllib.error.HTTPError) as absent:
                http_get(f"http://127.0.0.1:{http_port}{path}")
            assert absent.value.code == 404, path
    if service.grpc:
        # What ig-infra's own health check sees: make up runs it with no IG_IDENTITIES in its environment.
        with monkeypatch.context() as bare:
            bare.delenv("IG_IDENTITIES", raising=False)
            bare.delenv("IG_TLS_DIR", raising=False)
            assert grpc_healthy(grpc_port, infra.paths)  # type: ignore[attr-defined]
        with channel_as("operator", f"127.0.0.1:{grpc_port}") as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            # Reflection would list every method to anyone let in: off unless IG_GRPC_REFLECTION turns it on.
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            with pytest.raises(grpc.RpcError) as reflection:
                list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
            assert reflection.value.code() == grpc.StatusCode.UNIMPLEMENTED

    async def applied() -> list[str]:
        conn = await asyncpg.connect(database_url)
        try:
            rows = await conn.fetch(f"SELECT component, name FROM {service.schema}.schema_migrations")
            return sorted(f"{r['component']}/{r['name']}" for r in rows)
        finally:
            await conn.close()

    migrations = asyncio.run(applied())
    assert "ig_common/0001_outbox_inbox.sql" in migrations
    assert any(m.startswith(f"{service.schema}/0001_") for m in migrations)


@pytest.mark.parametrize("service", SERVICES, ids=[s.name for s in SERVICES])
def test_missing_setting_stops_start_up_naming_it(service: Service) -> None:
    result = subprocess.run([sys.executable, "-m", service.module], env={"PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "invalid setting IG_DATABASE_URL" in result.stderr
    assert "invalid setting IG_KAFKA_BOOTSTRAP" in result.stderr
    if service.name in ("evidence", "audit-portal"):  # they hold tenants' data: never started without the pins
        assert "invalid setting IG_TENANT_RESIDENCY_FILE: Value error, unset" in result.stderr


@pytest.mark.parametrize("service", SERVICES, ids=[s.name for s in SERVICES])
def test_no_certificate_stops_start_up_naming_it(service: Service, infra: object, database_url: str,
                                                 tmp_path: Path) -> None:
    env = {**infra.env(database_url), "IG_HTTP_PORT": str(free_port()), "IG_GRPC_PORT": str(free_port()),  # type: ignore[attr-defined]
           "IG_AUTHZEN_PORT": str(free_port()), "IG_FORWARD_AUTH_PORT": str(free_port()),
           "IG_API_PORT": str(free_port()), "IG_PUBLIC_PORT": str(free_port()),
           "IG_HEALTH_PORT": str(free_port()), "IG_TLS_DIR": str(tmp_path / "nothing-here"), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", service.module], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "invalid setting IG_TLS_DIR" in result.stderr and "nothing-here" in result.stderr
