"""Whether the service answers what raw OPA answers: every input of the mix asked once each way, unloaded, before
any timing (bench_policy.py reports the count; a non-zero count makes the timings meaningless)."""

from __future__ import annotations

import ssl
from typing import Any

import aiohttp
import httpx
from envoy.service.auth.v3 import external_auth_pb2_grpc
from ext_authz_mix import rule_id_of  # beside this script
from ig.policy.v1 import policy_pb2, policy_pb2_grpc
from ig_common.grpc_client import aio_channel_as
from ig_common.tls import workload_directory
from ig_policy.testing import OpaServer

RESULT_NAMES = {policy_pb2.RESULT_ALLOW: "ALLOW", policy_pb2.RESULT_DENY: "DENY", policy_pb2.RESULT_STEP_UP: "STEP_UP"}
# Decide is driven as a gateway would call it: mTLS with the gateway's workload certificate.
CLIENT_IDENTITY = "gateway"


async def raw_opa_answer(session: aiohttp.ClientSession, opa: OpaServer, document: dict[str, Any]) -> dict[str, Any]:
    """What OPA itself answers for ``document``: the side every comparison below is made against."""
    async with session.post(f"{opa.url}/v1/data/ig/ctx/decision", json={"input": document}) as reply:
        result: dict[str, Any] = (await reply.json())["result"]
        return result


async def answers_differing(opa: OpaServer, grpc_address: str, mix: list[tuple[dict[str, Any], Any]]) -> int:
    """Ask every input once each way (unloaded) and count the (result, rule id) pairs that differ."""
    differing = 0
    async with aiohttp.ClientSession(headers=opa.headers) as session, \
            aio_channel_as(CLIENT_IDENTITY, grpc_address) as channel:
        stub = policy_pb2_grpc.PolicyServiceStub(channel)
        for document, request in mix:
            raw = await raw_opa_answer(session, opa, document)
            decided = await stub.Decide(request, timeout=10)
            differing += (raw["result"], raw["rule_id"]) != (RESULT_NAMES[decided.result], decided.rule_id)
    return differing


async def check_answers_differing(opa: OpaServer, grpc_address: str, mix: list[tuple[dict[str, Any], Any]]) -> int:
    """As answers_differing, for Check: the rule id the gateway would see against raw OPA's."""
    differing = 0
    async with aiohttp.ClientSession(headers=opa.headers) as session, \
            aio_channel_as(CLIENT_IDENTITY, grpc_address) as channel:
        stub = external_auth_pb2_grpc.AuthorizationStub(channel)
        for document, check in mix:
            raw = await raw_opa_answer(session, opa, document)
            differing += raw["rule_id"] != rule_id_of(await stub.Check(check, timeout=10))
    return differing


async def forward_answers_differing(opa: OpaServer, url: str, mix: list[tuple[dict[str, Any], dict[str, str]]]
                                    ) -> int:
    """As answers_differing, for forward-auth: the X-IG-Rule-Id nginx would see against raw OPA's rule id."""
    gateway = workload_directory(CLIENT_IDENTITY)
    context = ssl.create_default_context(cafile=str(gateway / "ca.crt"))
    context.load_cert_chain(gateway / "tls.crt", gateway / "tls.key")
    differing = 0
    async with aiohttp.ClientSession(headers=opa.headers) as session, \
            httpx.AsyncClient(verify=context, timeout=10) as client:
        for document, headers in mix:
            raw = await raw_opa_answer(session, opa, document)
            differing += raw["rule_id"] != (await client.get(url, headers=headers)).headers.get("x-ig-rule-id")
    return differing
