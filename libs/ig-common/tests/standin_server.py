"""The authorization matrix's stand-in server: every method of the suite answered at once by a stand-in handler,
behind the real server bootstrap (mTLS, the table, the interceptor). Runs as a process of its own, as a service
does (grpcio's asyncio server and the test's blocking clients do not share one process well).

Usage: python standin_server.py CERT_DIR TABLE PORT METRICS_PORT (prints "serving" once it listens; Prometheus
metrics, the refusal counters among them, on METRICS_PORT)
"""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import ig
from google.protobuf.descriptor import MethodDescriptor
from grpc_health.v1 import health_pb2
from ig_common.authz import AuthorizationTable
from ig_common.grpc_server import ServerSecurity, build_grpc_server
from ig_common.tls import WorkloadCertificate
from prometheus_client import start_http_server


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
    # Standard services the suite serves from generated code of their own: Envoy's ext_authz (the policy service;
    # xds-protos, installed with the workspace).
    from envoy.service.auth.v3 import external_auth_pb2

    for method in external_auth_pb2.DESCRIPTOR.services_by_name["Authorization"].methods:
        found[f"/envoy.service.auth.v3.Authorization/{method.name}"] = method
    return found


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


async def serve(directory: Path, table: Path, port: int, metrics_port: int) -> None:
    start_http_server(metrics_port, addr="127.0.0.1")
    security = ServerSecurity(WorkloadCertificate(directory), AuthorizationTable.load(table))
    server, _ = build_grpc_server([], host="127.0.0.1", port=port, security=security)
    by_service: dict[str, dict[str, grpc.RpcMethodHandler[Any, Any]]] = {}
    for path, method in suite_methods().items():
        service, name = path[1:].split("/")
        by_service.setdefault(service, {})[name] = _standin(method)
    # The real health servicer is already there (build_grpc_server): stand in for the suite's own services only.
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(s, h)
                                     for s, h in by_service.items() if s != "grpc.health.v1.Health"])
    await server.start()
    print("serving", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(serve(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
