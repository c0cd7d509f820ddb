"""Sharing a port (SO_REUSEPORT) is an explicit opt-in of a service's worker processes; by default a second server
on a taken port fails to bind, loudly, instead of silently taking part of the first one's connections."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from ig_common.authz import AuthorizationTable
from ig_common.grpc_server import ServerSecurity, build_grpc_server
from ig_common.http_server import build_http_app, serve_http
from ig_common.tls import WorkloadCertificate
from ig_infra.pki import DevCA
from ig_infra.process import free_port


@pytest.fixture
def security(tmp_path: Path) -> ServerSecurity:
    directory = DevCA.load_or_create(tmp_path / "ca").issue("policy", tmp_path / "server").directory
    table = AuthorizationTable.from_document({"identities": ["policy"], "methods": {}})
    return ServerSecurity(WorkloadCertificate(directory), table)


def test_a_second_grpc_server_on_a_taken_port_fails_to_bind_by_default(security: ServerSecurity) -> None:
    async def scenario() -> None:
        port = free_port()
        first, _ = build_grpc_server([], host="127.0.0.1", port=port, security=security)
        await first.start()
        try:
            with pytest.raises(OSError, match="cannot bind gRPC port"):
                build_grpc_server([], host="127.0.0.1", port=port, security=security)
        finally:
            await first.stop(None)

    asyncio.run(scenario())


def test_grpc_servers_that_opt_in_share_the_port(security: ServerSecurity) -> None:
    async def scenario() -> None:
        port = free_port()
        first, _ = build_grpc_server([], host="127.0.0.1", port=port, security=security, reuse_port=True)
        await first.start()
        try:
            second, _ = build_grpc_server([], host="127.0.0.1", port=port, security=security, reuse_port=True)
            await second.start()
            await second.stop(None)
        finally:
            await first.stop(None)

    asyncio.run(scenario())


def test_http_listeners_that_opt_in_share_the_port_and_others_are_refused(security: ServerSecurity) -> None:
    async def scenario() -> None:
        port = free_port()
        stop = asyncio.Event()
        app = build_http_app("test")
        servers = [asyncio.create_task(serve_http(app, "127.0.0.1", port, stop, tls=security.certificate,
                                                  reuse_port=True)) for _ in range(2)]
        try:
            await asyncio.sleep(0.5)
            assert not any(task.done() for task in servers), [t.exception() for t in servers if t.done()]
            # A listener that did not opt in cannot join the group.
            plain = socket.socket()
            with pytest.raises(OSError):
                plain.bind(("127.0.0.1", port))
            plain.close()
        finally:
            stop.set()
            await asyncio.gather(*servers)

    asyncio.run(scenario())
