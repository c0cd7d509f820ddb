"""gRPC channels that present the workload's certificate and verify the server's chain and name."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc

from ig_common.tls import WorkloadCertificate

ChannelOptions = Sequence[tuple[str, Any]]


def secure_channel(target: str, certificate: WorkloadCertificate, options: ChannelOptions = ()) -> grpc.Channel:
    return grpc.secure_channel(target, certificate.channel_credentials(), options=list(options))


def secure_aio_channel(target: str, certificate: WorkloadCertificate,
                       options: ChannelOptions = ()) -> grpc.aio.Channel:
    return grpc.aio.secure_channel(target, certificate.channel_credentials(), options=list(options))
