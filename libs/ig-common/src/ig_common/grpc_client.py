"""gRPC channels that present the workload's certificate and verify the server's chain and name.

A client tool acts as its own identity: ``IG_TLS_DIR`` when set, else ``$IG_IDENTITIES/<own name>`` (the layout
``ig-infra`` writes). There is no insecure fallback: without a certificate the call is never made.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc

from ig_common.tls import WorkloadCertificate, load_workload_certificate

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
