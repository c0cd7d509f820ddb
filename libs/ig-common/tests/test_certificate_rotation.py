"""A renewed workload certificate is served without a restart; an expired one is refused.

A real gRPC server built the way every service builds it (ig_common.grpc_server with ServerSecurity), on
certificates from a development CA of the test's own.
"""

from __future__ import annotations

import asyncio
import datetime
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from grpc_health.v1 import health_pb2, health_pb2_grpc
from ig_common.grpc_client import RenewingStub
from ig_common.tls import WorkloadCertificate
from ig_infra.pki import DevCA
from ig_infra.process import free_port


@pytest.fixture
def ca(tmp_path: Path) -> DevCA:
    return DevCA.load_or_create(tmp_path / "ca")


# The server runs in a process of its own, as a service does: built by ig_common.grpc_server, serving until killed.
SERVER = """
import asyncio, sys
from pathlib import Path
from grpc_health.v1 import health_pb2
from ig_common.authz import AuthorizationTable
from ig_common.grpc_server import ServerSecurity, build_grpc_server
from ig_common.tls import WorkloadCertificate

async def main():
    table = AuthorizationTable.from_document({"identities": ["policy", "operator"],
                                              "methods": {"/grpc.health.v1.Health/Check": ["operator"]}})
    server, health = build_grpc_server([], host="127.0.0.1", port=int(sys.argv[2]),
                                       security=ServerSecurity(WorkloadCertificate(Path(sys.argv[1])), table))
    await server.start()
    await health.set("", health_pb2.HealthCheckResponse.SERVING)
    print("serving", flush=True)
    await server.wait_for_termination()

asyncio.run(main())
"""


@dataclass
class Served:
    port: int
    directory: Path


@pytest.fixture
def served(ca: DevCA, tmp_path: Path) -> Iterator[Served]:
    directory = ca.issue("policy", tmp_path / "server").directory
    port = free_port()
    process = start_server(directory, port)
    try:
        yield Served(port, directory)
    finally:
        process.kill()
        process.wait(10)



def served_serial(port: int, client_dir: Path) -> int:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(client_dir / "ca.crt"))
    context.load_cert_chain(client_dir / "tls.crt", client_dir / "tls.key")
    context.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return int(x509.load_der_x509_certificate(der).serial_number)


def health(port: int, client_dir: Path) -> grpc.StatusCode:
    credentials = grpc.ssl_channel_credentials((client_dir / "ca.crt").read_bytes(),
                                               (client_dir / "tls.key").read_bytes(),
                                               (client_dir / "tls.crt").read_bytes())
    with grpc.secure_channel(f"localhost:{port}", credentials) as channel:
        try:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        except grpc.RpcError as error:
            return error.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def test_a_renewed_certificate_is_served_without_a_restart(ca: DevCA, served: Served,
                                                           tmp_path: Path) -> None:
    port, server_dir = served.port, served.directory
    client = ca.issue("operator", tmp_path / "client").directory
    first = served_serial(port, client)
    assert first == x509.load_pem_x509_certificate((server_dir / "tls.crt").read_bytes()).serial_number
    renewed = ca.issue("policy", server_dir)  # what cert-manager or ig-infra does: new key and certificate in place
    second = served_serial(port, client)
    assert second != first
    assert second == x509.load_pem_x509_certificate(renewed.cert.read_bytes()).serial_number
    assert health(port, client) is grpc.StatusCode.OK


def test_an_expired_client_certificate_is_refused(ca: DevCA, served: Served, tmp_path: Path) -> None:
    port = served.port
    long_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=3)
    expired = ca.issue("operator", tmp_path / "expired", not_before=long_ago,
                       lifetime=datetime.timedelta(days=1)).directory
    assert health(port, expired) is grpc.StatusCode.UNAVAILABLE
    fresh = ca.issue("operator", tmp_path / "fresh").directory
    assert health(port, fresh) is grpc.StatusCode.OK


def test_a_broken_renewal_keeps_the_served_certificate(ca: DevCA, served: Served, tmp_path: Path) -> None:
    """A key that does not match its certificate (a renewal caught half-written) is not taken."""
    port, server_dir = served.port, served.directory
    client = ca.issue("operator", tmp_path / "client").directory
    before = served_serial(port, client)
    other = ca.issue("policy", tmp_path / "other")
    (server_dir / "tls.key").write_bytes(other.key.read_bytes())
    assert served_serial(port, client) == before
    assert health(port, client) is grpc.StatusCode.OK


def start_server(directory: Path, port: int) -> subprocess.Popen[str]:
    process = subprocess.Popen([sys.executable, "-c", SERVER, str(directory), str(port)], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "serving"
    return process


def test_a_long_lived_client_presents_its_renewed_certificate(ca: DevCA, tmp_path: Path) -> None:
    """A client channel keeps the certificate it was made with; once that expires, its next handshake is refused.
    RenewingStub moves to the renewed certificate (the portal's clients of the evidence service use it)."""
    server_dir = ca.issue("policy", tmp_path / "server").directory
    now = datetime.datetime.now(datetime.UTC)
    client_dir = ca.issue("operator", tmp_path / "client", not_before=now - datetime.timedelta(hours=1),
                          lifetime=datetime.timedelta(hours=1, seconds=4)).directory
    port = free_port()

    async def scenario() -> tuple[grpc.StatusCode, grpc.StatusCode]:
        certificate = WorkloadCertificate(client_dir)
        renewing = RenewingStub(health_pb2_grpc.HealthStub, f"localhost:{port}", certificate)
        stale = grpc.aio.secure_channel(f"localhost:{port}", certificate.channel_credentials())
        server = start_server(server_dir, port)
        try:
            await renewing.get().Check(health_pb2.HealthCheckRequest(), timeout=5)
            await health_pb2_grpc.HealthStub(stale).Check(health_pb2.HealthCheckRequest(), timeout=5)
            ca.issue("operator", client_dir)  # renewed on disk, as cert-manager or ig-infra does
            await asyncio.sleep(max(0.0, (now + datetime.timedelta(seconds=5) -
                                          datetime.datetime.now(datetime.UTC)).total_seconds()))
            # A new server process: every client must handshake again, now that the first certificate expired.
            server.kill()
            server.wait(10)
            server = start_server(server_dir, port)
            return await _code(renewing.get()), await _code(health_pb2_grpc.HealthStub(stale))
        finally:
            server.kill()
            server.wait(10)
            await stale.close()
            await renewing.close()

    renewed, stale = asyncio.run(scenario())
    assert stale is grpc.StatusCode.UNAVAILABLE  # what a channel made once would face
    assert renewed is grpc.StatusCode.OK


async def _code(stub: health_pb2_grpc.HealthStub) -> grpc.StatusCode:
    try:
        await stub.Check(health_pb2.HealthCheckRequest(), timeout=5, wait_for_ready=False)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK
