"""The server interceptor that enforces the table on every call, unary and streaming alike, in-process.

The TLS handshake already refused callers without a certificate of the trust domain's CA. Here: a certificate
whose SPIFFE ID the table does not know -> UNAUTHENTICATED; a known identity calling a method not granted to it ->
PERMISSION_DENIED naming the method and the caller. Both are counted and logged.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import structlog
from prometheus_client import Counter

from ig_common.authz.caller import Caller, bind_caller, unbind_caller
from ig_common.authz.table import AuthorizationTable, Refusal
from ig_common.authz.user_token import USER_TOKEN_METADATA, UserTokenError, verify_user_token
from ig_common.spiffe import SpiffeId

log = structlog.get_logger(__name__)
REFUSED = Counter("ig_grpc_authz_refused_total", "gRPC calls refused by the authorization table",
                  ["method", "reason"])

Context = grpc.aio.ServicerContext[Any, Any]
Continuation = Callable[[grpc.HandlerCallDetails], Awaitable["grpc.RpcMethodHandler[Any, Any] | None"]]


class AuthorizationInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, table: AuthorizationTable, own_id: SpiffeId) -> None:
        self._table = table
        self._own = own_id

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        return _guarded(handler, lambda context: self.authorize(method, context))

    async def authorize(self, method: str, context: Context) -> Caller:
        auth = {key: list(values) for key, values in context.auth_context().items()}
        claimed = (auth.get("peer_spiffe_id") or [b""])[0].decode(errors="replace")
        workload = SpiffeId.parse(claimed)
        name = workload.name if workload is not None and self._same_domain(workload) else ""
        refusal = self._table.may_call(method, name)
        if refusal is Refusal.UNKNOWN_IDENTITY:
            await self._refuse(context, method, refusal, grpc.StatusCode.UNAUTHENTICATED,
                               f"{method}: caller identity {claimed or '(none)'} is not known "
                               "to the authorization table")
        if refusal is Refusal.NOT_GRANTED:
            await self._refuse(context, method, refusal, grpc.StatusCode.PERMISSION_DENIED,
                               f"{method} is not granted to {workload}")
        assert workload is not None
        return Caller(workload, self._table.tenants_of(workload.name), await self._forwarded_user(
            method, workload, context, auth))

    async def _forwarded_user(self, method: str, workload: SpiffeId, context: Context,
                              auth: dict[str, list[bytes]]) -> Any:
        token = dict(context.invocation_metadata() or ()).get(USER_TOKEN_METADATA)
        if token is None:
            return None
        if not self._table.may_forward_users(workload.name):
            await self._refuse(context, method, Refusal.NOT_GRANTED, grpc.StatusCode.PERMISSION_DENIED,
                               f"{USER_TOKEN_METADATA}: {workload} may not forward end users")
        try:
            return verify_user_token(str(token), auth["x509_pem_cert"][0], workload, self._own)
        except (UserTokenError, KeyError, ValueError) as error:
            await self._refuse(context, method, Refusal.UNKNOWN_IDENTITY, grpc.StatusCode.UNAUTHENTICATED,
                               str(error))
        return None

    def _same_domain(self, workload: SpiffeId) -> bool:
        return workload.trust_domain == self._own.trust_domain and workload.namespace == self._own.namespace

    async def _refuse(self, context: Context, method: str, refusal: Refusal, code: grpc.StatusCode,
                      message: str) -> None:
        REFUSED.labels(method, refusal.value).inc()
        log.warning("grpc_call_refused", method=method, reason=refusal.value, code=code.name, detail=message,
                    peer=context.peer())
        await context.abort(code, message)


Check = Callable[[Context], Awaitable[Caller]]


def _guarded(handler: grpc.RpcMethodHandler[Any, Any], check: Check) -> grpc.RpcMethodHandler[Any, Any]:
    """The same handler, with ``check`` run first and its caller bound for the call's duration."""
    codec = {"request_deserializer": handler.request_deserializer,
             "response_serializer": handler.response_serializer}
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(_single(handler.unary_unary, check), **codec)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(_single(handler.stream_unary, check), **codec)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(_streaming(handler.unary_stream, check), **codec)
    assert handler.stream_stream is not None
    return grpc.stream_stream_rpc_method_handler(_streaming(handler.stream_stream, check), **codec)


def _single(behaviour: Any, check: Check) -> Any:
    async def guarded(request: Any, context: Context) -> Any:
        token = bind_caller(await check(context))
        try:
            return await behaviour(request, context)
        finally:
            unbind_caller(token)

    return guarded


def _streaming(behaviour: Any, check: Check) -> Any:
    if not inspect.isasyncgenfunction(behaviour):
        # A streaming servicer may also write with context.write() and return: guard it as a single call.
        return _single(behaviour, check)

    async def guarded(request: Any, context: Context) -> AsyncIterator[Any]:
        token = bind_caller(await check(context))
        try:
            async for response in behaviour(request, context):
                yield response
        finally:
            unbind_caller(token)

    return guarded
