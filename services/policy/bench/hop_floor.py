"""The floor under Decide's overhead: the service's own gRPC stack answering a fixed decision, doing no work.

``make bench-policy`` drives this server exactly like Decide (same client, schedule, inputs and rounds). It is the
service's server as ``ig_common.grpc_server.build_grpc_server`` builds it (grpc.aio on uvloop, health, reflection,
the metrics interceptor) with a servicer that sends the same initial metadata and a decision-sized answer at
once: no validation, no OPA round trip, no decision log, no tracing. What it measures is the price of the hop
from a gateway into a Python gRPC service on this machine, which any front end of OPA written this way pays
before it does anything.

With ``--plaintext`` it serves the same stack without mTLS and without the authorization interceptor: the
benchmark drives both, and the difference is what the suite's transport security costs a call.

Usage: python hop_floor.py PORT [--plaintext] (serves on 127.0.0.1:PORT until terminated).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from ig.policy.v1 import policy_pb2, policy_pb2_grpc
from ig_common.authz import AuthorizationTable
from ig_common.grpc_server import GrpcService, MetricsInterceptor, ServerSecurity, build_grpc_server
from ig_common.service import run_process
from ig_common.tls import load_workload_certificate
from ig_policy.api.grpc_service import SERVICE_NAME
from ig_policy.api.translate import decision_metadata, response_from_decision
from ig_policy.domain.model import Decision, Reason, Result, Verdict

# The real service's answer to a golden step-up (policies/golden/device_trust.json), translated by the service's
# own code, so the answer and its five headers stay what Decide sends.
_STEP_UP = "Device trust 'low' is below the required 'medium'; a multi-factor step-up is needed."
_DECISION = Decision(
    decision_id="dec_" + "5e" * 16, policy_revision="9f2c" * 16,
    evaluated_at=datetime.fromtimestamp(1_796_000_000, UTC),
    verdict=Verdict(Result.STEP_UP, "ig.device.step_up_low_trust", _STEP_UP,
                    (Reason("ig.device.step_up_low_trust", _STEP_UP),), ("step_up:mfa",)),
)
ANSWER = response_from_decision(_DECISION)
METADATA = decision_metadata(_DECISION)


class FixedAnswer(policy_pb2_grpc.PolicyServiceServicer):
    async def Decide(self, request: policy_pb2.DecideRequest, context: Any) -> policy_pb2.DecideResponse:
        await context.send_initial_metadata(METADATA)
        return ANSWER


def plaintext_server(service: GrpcService, port: int) -> grpc.aio.Server:
    """build_grpc_server's stack less its security: the baseline the security cost is measured against. Only the
    benchmark builds this; no service can (build_grpc_server has no insecure mode)."""
    server = grpc.aio.server(interceptors=[MetricsInterceptor()], options=[("grpc.so_reuseport", 0)])
    service.register(service.servicer, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    return server


async def serve(port: int, plaintext: bool) -> None:
    service = GrpcService(SERVICE_NAME, FixedAnswer(), policy_pb2_grpc.add_PolicyServiceServicer_to_server)
    if plaintext:
        server = plaintext_server(service, port)
    else:
        # The same security as the service (mTLS, the authorization table) so the floor pays what Decide pays.
        security = ServerSecurity(load_workload_certificate("policy"),
                                  AuthorizationTable.load(Path(os.environ["IG_AUTHZ_TABLE"])))
        server, _ = build_grpc_server([service], host="127.0.0.1", port=port, security=security)
    await server.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(grace=1)


if __name__ == "__main__":
    run_process(serve(int(sys.argv[1]), plaintext="--plaintext" in sys.argv[2:]))
