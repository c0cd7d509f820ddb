"""Every gRPC method of every service against every kind of caller, through a real mTLS server and the real table.

Each method is served by a stand-in handler that answers at once, with the suite's own ServerSecurity (the dev CA's
mTLS, policies/authz/grpc-methods.yaml, the shared interceptor): what is tested is who gets through to a handler.
    no client certificate            -> handshake refused (the client sees UNAVAILABLE)
    a certificate from another CA    -> handshake refused
    the trust domain, unknown name   -> UNAUTHENTICATED
    a known identity not granted     -> PERMISSION_DENIED naming the method and the caller
    the granted identity             -> OK
The real services are wired with the same bootstrap (ig_common.service); e2e/test_zero_trust.py calls them.
"""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import ig
import pytest
from google.protobuf.descriptor import MethodDescriptor
from grpc_health.v1 import health_pb2
from ig_common.authz import AuthorizationTable
from ig_common.grpc_server import ServerSecurity
from ig_common.tls import WorkloadCertificate
from ig_infra.pki import DevCA
from prometheus_client import REGISTRY

REPO = Path(__file__).resolve().parents[3]
TABLE_PATH = REPO / "policies" / "authz" / "grpc-methods.yaml"
TABLE = AuthorizationTable.load(TABLE_PATH)


def suite_methods() -> dict[str, MethodDescriptor]:
    """Every method of every service the suite's generated code defines, plus the standard health service."""
    found: dict[str, MethodDescriptor] = {}
    for module in pkgutil.walk_packages(ig.__path__, "ig."):
        if module.name.endswith("_pb2"):
            for service in importlib.import_module(module.name).DESCRIPTOR.services_by_name.values():
                for method in service.methods:
                    found[f"/{service.full_name}/{method.name}"] = method
    for method in health_pb2.DESCRIPTOR.services_by_name["Health"].methods:
        found[f"/grpc.health.v1.Health/{method.name}"] = method
    return found


METHODS = suite_methods()


def test_every_method_has_a_row_and_every_row_a_method() -> None:
    """Default deny would refuse a new method for everyone; a row is how it gets its callers. A stale row is a
    grant nobody reviews."""
    served = set(METHODS)
    rows = {m for m in TABLE.methods if not m.startswith("/grpc.reflection.")}
    assert served - rows == set(), f"methods without a row in {TABLE_PATH.name}: {sorted(served - rows)}"
    assert rows - served == set(), f"rows naming no method: {sorted(rows - served)}"


def granted_to(method: str) -> str:
    names = sorted(TABLE.methods[method])
    return "operator" if names == ["*"] else names[0]


def not_granted_to(method: str) -> str | None:
    names = TABLE.methods[method]
    if "*" in names:
        return None
    return sorted(TABLE.identities - names)[0]


def _standin(method: MethodDescriptor) -> grpc.RpcMethodHandler[Any, Any]:
    """Answers an empty message at once, whatever the method's shape."""
    async def unary(request: Any, context: Any) -> bytes:
        return b""

    async def stream_in(requests: AsyncIterator[Any], context: Any) -> bytes:
        async for _ in requests:
            pass
        return b""

    async def stream_out(request: Any, context: Any) -> AsyncIterator[bytes]:
        yield b""

    async def both(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[bytes]:
        async for _ in requests:
            pass
        yield b""

    if method.client_streaming and method.server_streaming:
        return grpc.stream_stream_rpc_method_handler(both)
    if method.client_streaming:
        return grpc.stream_unary_rpc_method_handler(stream_in)
    if method.server_streaming:
        return grpc.unary_stream_rpc_method_handler(stream_out)
    return grpc.unary_unary_rpc_method_handler(unary)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pki")
    ours, theirs = DevCA.load_or_create(root / "ca"), DevCA.load_or_create(root / "other-ca", common_name="another CA")
    dirs = {name: ours.issue(name, root / name).directory for name in TABLE.identities}
    dirs["intruder"] = ours.issue("intruder", root / "intruder").directory
    dirs["release@other-namespace"] = ours.issue("release", root / "release-other-ns", namespace="elsewhere").directory
    dirs["release@other-ca"] = theirs.issue("release", root / "release-other-ca").directory
    dirs["server"] = ours.issue("policy", root / "server").directory
    return dirs


@pytest.fixture(scope="module")
def server(pki: dict[str, Path]) -> Iterator[str]:
    """The stand-in server on a loop of its own thread, so the test can use blocking clients."""
    import threading

    from ig_common.grpc_server import build_grpc_server

    security = ServerSecurity(WorkloadCertificate(pki["server"]), TABLE)
    started: dict[str, Any] = {}
    ready = threading.Event()

    def serve() -> None:
        loop = asyncio.new_event_loop()
        started["loop"] = loop

        async def main() -> None:
            srv, _ = build_grpc_server([], host="127.0.0.1", port=0, security=security)
            by_service: dict[str, dict[str, grpc.RpcMethodHandler[Any, Any]]] = {}
            for path, method in METHODS.items():
                service, name = path[1:].split("/")
                by_service.setdefault(service, {})[name] = _standin(method)
            srv.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(s, h)
                                          for s, h in by_service.items() if s != "grpc.health.v1.Health"])
            started["port"] = srv.add_secure_port("127.0.0.1:0", security.certificate.server_credentials())
            await srv.start()
            started["server"] = srv
            ready.set()
            await srv.wait_for_termination()

        loop.run_until_complete(main())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(30)
    yield f"localhost:{started['port']}"
    asyncio.run_coroutine_threadsafe(started["server"].stop(0), started["loop"]).result(10)
    thread.join(10)


def call(target: str, credentials: grpc.ChannelCredentials, path: str) -> grpc.StatusCode:
    method = METHODS[path]
    with grpc.secure_channel(target, credentials) as channel:
        try:
            if method.client_streaming and method.server_streaming:
                list(channel.stream_stream(path)(iter([b""]), timeout=5))
            elif method.client_streaming:
                channel.stream_unary(path)(iter([b""]), timeout=5)
            elif method.server_streaming:
                list(channel.unary_stream(path)(b"", timeout=5))
            else:
                channel.unary_unary(path)(b"", timeout=5)
        except grpc.RpcError as error:
            return error.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def credentials_of(directory: Path, *, with_certificate: bool = True) -> grpc.ChannelCredentials:
    ca = (directory / "ca.crt").read_bytes()
    if not with_certificate:
        return grpc.ssl_channel_credentials(ca)
    return grpc.ssl_channel_credentials(ca, (directory / "tls.key").read_bytes(), (directory / "tls.crt").read_bytes())


REFUSALS = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)


def refused(method: str, reason: str) -> float:
    return REGISTRY.get_sample_value("ig_grpc_authz_refused_total", {"method": method, "reason": reason}) or 0.0


@pytest.mark.parametrize("path", sorted(METHODS))
def test_each_kind_of_caller_gets_what_the_table_says(server: str, pki: dict[str, Path], path: str) -> None:
    ours = pki["server"]
    assert call(server, credentials_of(ours, with_certificate=False), path) is grpc.StatusCode.UNAVAILABLE
    # The other CA's certificate names a granted identity: only the chain decides, and it is refused.
    foreign = grpc.ssl_channel_credentials((ours / "ca.crt").read_bytes(),
                                           (pki["release@other-ca"] / "tls.key").read_bytes(),
                                           (pki["release@other-ca"] / "tls.crt").read_bytes())
    assert call(server, foreign, path) is grpc.StatusCode.UNAVAILABLE

    before = refused(path, "unknown_identity")
    assert call(server, credentials_of(pki["intruder"]), path) is grpc.StatusCode.UNAUTHENTICATED
    assert call(server, credentials_of(pki["release@other-namespace"]), path) is grpc.StatusCode.UNAUTHENTICATED
    assert refused(path, "unknown_identity") == before + 2

    stranger = not_granted_to(path)
    if stranger is not None:
        before = refused(path, "not_granted")
        assert call(server, credentials_of(pki[stranger]), path) is grpc.StatusCode.PERMISSION_DENIED
        assert refused(path, "not_granted") == before + 1
    answered = call(server, credentials_of(pki[granted_to(path)]), path)
    if path.startswith("/grpc.health."):
        # The real health servicer answers these (grpcio's lacks List): the caller got past authorization.
        assert answered not in REFUSALS, answered
    else:
        assert answered is grpc.StatusCode.OK


def test_permission_denied_names_the_method_and_the_caller(server: str, pki: dict[str, Path]) -> None:
    path = "/ig.flags.v1.FlagService/SetFlag"
    with grpc.secure_channel(server, credentials_of(pki["burn"])) as channel, \
            pytest.raises(grpc.RpcError) as denied:
        channel.unary_unary(path)(b"", timeout=5)
    assert denied.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert denied.value.details() == f"{path} is not granted to spiffe://maestro.local/ns/ig/sa/burn"
