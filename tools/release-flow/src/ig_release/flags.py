"""Runbook helper: read, pin and unpin feature flags through ig.flags.v1.FlagService (the burn service's admin API).

A pinned flag is left alone by the auto-throttle (and the burn service says so), which is how an operator holds a
flag during an incident; unpinning hands it back to the automation."""

from __future__ import annotations

import json

import grpc
from google.protobuf import json_format, struct_pb2
from ig.flags.v1 import flags_pb2, flags_pb2_grpc
from ig_common.grpc_client import channel_as

# Pinning a flag is flag administration: the table grants it to the operator identity only.
CLIENT_IDENTITY = "operator"


def _stub(address: str) -> tuple[grpc.Channel, flags_pb2_grpc.FlagServiceStub]:
    channel = channel_as(CLIENT_IDENTITY, address)
    return channel, flags_pb2_grpc.FlagServiceStub(channel)  # type: ignore[no-untyped-call]


def show(address: str, key: str) -> str:
    channel, stub = _stub(address)
    with channel:
        flag = stub.GetFlag(flags_pb2.GetFlagRequest(key=key), timeout=10).flag
        history = stub.FlagHistory(flags_pb2.FlagHistoryRequest(key=key), timeout=10)
    return json.dumps({"flag": json_format.MessageToDict(flag),
                       "history": json_format.MessageToDict(history).get("changes", [])}, indent=2)


def set_flag(address: str, key: str, value: str, *, pinned: bool, reason: str) -> str:
    parsed = struct_pb2.Value()
    json_format.Parse(value, parsed)  # the value as JSON: false, 50, "text", {"a": 1}
    channel, stub = _stub(address)
    with channel:
        reply = stub.SetFlag(flags_pb2.SetFlagRequest(key=key, value=parsed, pinned=pinned, reason=reason), timeout=10)
    return json.dumps(json_format.MessageToDict(reply.flag), indent=2)
