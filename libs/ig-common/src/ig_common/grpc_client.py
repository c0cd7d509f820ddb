"""gRPC channels that present the workload's certificate and verify the server's chain and name.

A client tool acts as its own identity: ``IG_TLS_DIR`` when set, else ``$IG_IDENTITIES/<own name>`` (the layout
``ig-infra`` writes). There is no insecure fallback: without a certificate the call is never made.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import grpc

from ig_common.tls import Material, WorkloadCertificate, load_workload_certificate

ChannelOptions = Sequence[tuple[str, Any]]


def secure_channel(target: str, certificate: WorkloadCertificate, options: ChannelOptions = ()) -> grpc.Channel:
    return grpc.secure_channel(target, certificate.channel_credentials(), options=list(options))


def secure_aio_channel(target: str, certificate: WorkloadCertificate,
                       options: ChannelOptions = ()) -> grpc.aio.Channel:
    return grpc.aio.secure_channel(target, certificate.channel_credentials(), options=list(options))


def channel_as(own_name: str, target: str, options: ChannelOptions = ()) -> grpc.Channel:
    """A blocking channel to ``target`` as the client identity ``own_name``."""
    return secure_channel(target, load_workload_certificate(own_name), options)


def aio_channel_as(own_name: str, target: str, options: ChannelOptions = ()) -> grpc.aio.Channel:
    return secure_aio_channel(target, load_workload_certificate(own_name), options)


StubT = TypeVar("StubT")


class RenewingStub(Generic[StubT]):
    """A stub whose channel presents the workload's current certificate, for a long-lived client.

    grpc fixes a channel's credentials when the channel is made, so a client that keeps one channel would go on
    presenting a certificate that was renewed on disk long ago, and be refused at its next handshake once that
    one expires. ``get()`` notices a renewal (a few stat calls) and moves to a new channel; the old one is closed
    once the calls on it had ``grace_seconds`` to finish.
    """

    def __init__(self, make_stub: Callable[[grpc.aio.Channel], StubT], target: str,
                 certificate: WorkloadCertificate, *, grace_seconds: float = 30.0,
                 options: ChannelOptions = ()) -> None:
        self._make_stub = make_stub
        self._target = target
        self._certificate = certificate
        self._grace = grace_seconds
        self._options = list(options)
        self._material: Material | None = None
        self._channel: grpc.aio.Channel | None = None
        self._stub: StubT | None = None
        self._retiring: set[asyncio.Task[None]] = set()

    def get(self) -> StubT:
        self._certificate.refresh()
        material = self._certificate.current()
        if self._stub is None or material is not self._material:
            previous = self._channel
            self._channel = secure_aio_channel(self._target, self._certificate, self._options)
            self._stub, self._material = self._make_stub(self._channel), material
            if previous is not None:
                task = asyncio.get_running_loop().create_task(previous.close(grace=self._grace))
                self._retiring.add(task)
                task.add_done_callback(self._retiring.discard)
        return self._stub

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
        await asyncio.gather(*self._retiring, return_exceptions=True)
