"""gRPC server bootstrap: mTLS, the authorization table, health, metrics (and reflection when asked) on every server."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import Counter, Histogram

from ig_common.authz import AuthorizationInterceptor, AuthorizationTable
from ig_common.tls import WorkloadCertificate

GRPC_HANDLED = Counter(
    "ig_grpc_server_handled_total", "gRPC calls completed, by method and status code", ["method", "code"]
)
GRPC_LATENCY = Histogram(
    "ig_grpc_server_handling_seconds", "gRPC call latency, by method", ["method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


@dataclass(frozen=True)
class GrpcService:
    """One servicer to mount: ``register(servicer, server)`` is the generated ``add_XServicer_to_server``."""

    name: str
    servicer: object
    register: Callable[[Any, grpc.aio.Server], None]


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Counts and times unary-unary calls by status code; streaming calls are counted when they start."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or handler.unary_unary is None:
            if handler is not None:
                GRPC_HANDLED.labels(method, "STARTED").inc()
            return handler
        inner: Any = handler.unary_unary

        async def timed(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            started = time.perf_counter()
            code = "OK"
            try:
                return await inner(request, context)
            except Exception:
                code = "UNKNOWN"
                raise
            finally:
                status = context.code()
                if status is not None and status != grpc.StatusCode.OK:
                    code = status.name
                GRPC_HANDLED.labels(method, code).inc()
                GRPC_LATENCY.labels(method).observe(time.perf_counter() - started)

        return grpc.unary_unary_rpc_method_handler(
            timed, request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


@dataclass(frozen=True)
class ServerSecurity:
    """What every server needs before it listens: its certificate and the table of who may call what."""

    certificate: WorkloadCertificate
    table: AuthorizationTable
    reflection: bool = False


def build_grpc_server(
    services: Iterable[GrpcService], *, host: str, port: int, security: ServerSecurity, max_message_mb: int = 16,
    reuse_port: bool = False,
) -> tuple[grpc.aio.Server, health.HealthServicer]:
    """A server with the given services plus standard health, on an mTLS port only; not yet started.

    Metrics run outermost so that refused calls are counted with their status like any other.

    ``reuse_port``: share the port with other processes (SO_REUSEPORT; the kernel spreads *connections* over
    them), for a service's own worker processes. Off by default, so that a second service started on a taken
    port fails to bind instead of silently taking half of the other's connections."""
    options = [
        ("grpc.max_receive_message_length", max_message_mb * 1024 * 1024),
        ("grpc.max_send_message_length", max_message_mb * 1024 * 1024),
        ("grpc.so_reuseport", 1 if reuse_port else 0),
    ]
    authorization = AuthorizationInterceptor(security.table, security.certificate.spiffe_id)
    server = grpc.aio.server(interceptors=[MetricsInterceptor(), authorization], options=options)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name]
    for service in services:
        service.register(service.servicer, server)
        names.append(service.name)
    if security.reflection:
        reflection.enable_server_reflection([*names, reflection.SERVICE_NAME], server)
    # grpc raises RuntimeError for a port it cannot bind (older versions returned 0): either way, say which port.
    try:
        bound = server.add_secure_port(f"{host}:{port}", security.certificate.server_credentials())
    except RuntimeError as error:
        raise OSError(f"cannot bind gRPC port {host}:{port}: already in use? ({error})") from error
    if bound == 0:
        raise OSError(f"cannot bind gRPC port {host}:{port}: already in use?")
    return server, health_servicer


async def mark_serving(health_servicer: health.HealthServicer, service_names: Iterable[str]) -> None:
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    for name in service_names:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
