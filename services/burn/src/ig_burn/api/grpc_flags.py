"""gRPC ig.flags.v1.FlagService: the admin side of the flag registry (evaluation is OFREP over HTTP)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

import asyncpg
import grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.timestamp_pb2 import Timestamp
from ig.flags.v1 import flags_pb2, flags_pb2_grpc
from ig_common.authz import current_caller

from ig_burn.domain.flags import Flag, FlagValue, check_flag_key, check_flag_value
from ig_burn.events.builders import to_value
from ig_burn.store.flags import FLAG_CHANGES, FlagStore

Context = grpc.aio.ServicerContext[Any, Any]


def to_message(flag: Flag) -> flags_pb2.Flag:
    stamp = Timestamp()
    stamp.FromDatetime(flag.changed_at)
    return flags_pb2.Flag(key=flag.key, value=to_value(flag.value), pinned=flag.pinned, changed_by=flag.changed_by,
                          reason=flag.reason, changed_at=stamp)


def from_value(message: Any) -> FlagValue:
    """A protobuf Value as a flag value; whole numbers become integers (Value carries only doubles)."""
    value = MessageToDict(message)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return check_flag_value(value)


class FlagServicer(flags_pb2_grpc.FlagServiceServicer):
    def __init__(self, pool: asyncpg.Pool, store: FlagStore, on_change: Callable[[], Awaitable[None]]) -> None:
        self._pool = pool
        self._store = store
        self._on_change = on_change

    async def GetFlag(self, request: flags_pb2.GetFlagRequest, context: Context) -> flags_pb2.GetFlagResponse:
        key = await _key(request.key, context)
        async with self._pool.acquire() as conn:
            flag = await self._store.get(conn, key)
        if flag is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"key: no flag {key!r}")
        return flags_pb2.GetFlagResponse(flag=to_message(flag))

    async def ListFlags(self, request: flags_pb2.ListFlagsRequest, context: Context) -> flags_pb2.ListFlagsResponse:
        async with self._pool.acquire() as conn:
            flags = await self._store.list_flags(conn)
        return flags_pb2.ListFlagsResponse(flags=[to_message(f) for f in flags])

    async def SetFlag(self, request: flags_pb2.SetFlagRequest, context: Context) -> flags_pb2.SetFlagResponse:
        key = await _key(request.key, context)
        if not request.HasField("value") or request.value.WhichOneof("kind") in (None, "null_value"):
            await _invalid(context, "value: is required (boolean, number, string or object)")
        try:
            value = from_value(request.value)
        except ValueError as error:
            await _invalid(context, f"value: {error}")
        if not request.reason.strip():
            await _invalid(context, "reason: say why the flag changes")
        async with self._pool.acquire() as conn, conn.transaction():
            flag, changed = await self._store.set(conn, key, value, pinned=request.pinned,
                                                  changed_by=current_caller().actor, reason=request.reason.strip())
        if changed:
            FLAG_CHANGES.labels(key, "admin").inc()
        await self._on_change()
        return flags_pb2.SetFlagResponse(flag=to_message(flag))

    async def FlagHistory(self, request: flags_pb2.FlagHistoryRequest,
                          context: Context) -> flags_pb2.FlagHistoryResponse:
        key = await _key(request.key, context)
        async with self._pool.acquire() as conn:
            changes = await self._store.history(conn, key)
        if not changes:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"key: no flag {key!r}")
        return flags_pb2.FlagHistoryResponse(changes=[to_message(f) for f in changes])


async def _key(raw: str, context: Context) -> str:
    try:
        return check_flag_key(raw)
    except ValueError as error:
        await _invalid(context, f"key: {error}")


async def _invalid(context: Context, message: str) -> NoReturn:
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, message)
    raise AssertionError("abort returns only by raising")
