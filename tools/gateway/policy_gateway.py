"""A reference API gateway in front of an upstream, asking the Policy Reasoner before forwarding.

HTTP in, gRPC ``ig.policy.v1.PolicyService/Decide`` out. It copies the decision's ids from the gRPC initial
metadata into the HTTP response (``X-IG-Decision-Id``, ``X-IG-Rule-Id``, plus the masked explanation), and maps
the result: ALLOW -> forwarded (here: a built-in echo upstream), DENY -> 403 problem+json, STEP_UP -> 401 with an
RFC 9470 ``WWW-Authenticate: Bearer error="insufficient_user_authentication"`` challenge. If the policy service
cannot be asked, the gateway fails closed (503).

Run: ``uv run python tools/gateway/policy_gateway.py --listen 127.0.0.1:8090 --policy 127.0.0.1:50051``

Requests: ``METHOD /{tenant}/{type}/{id}[?action=export]``; identity and context arrive as headers an
authenticating proxy in front would set: X-User, X-User-Tenant (defaults to the path tenant), X-Roles,
X-Purposes (comma-separated), X-Purpose, X-Classification, X-Resource-Region, X-Network-Zone, X-Device-Trust,
X-Session-Risk, X-Auth-Level. ``X-Request-Time`` (RFC 3339, the client's clock) is forwarded as ``context.time``
(the gateway's clock when absent): the policy service judges time with its own clock and refuses a sent time
outside its skew (400 naming ``context.time``). ``X-IG-Break-Glass`` carries a signed break-glass grant
(``ig-policy break-glass``) as ``context.break_glass.grant``: the policy service verifies it.
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime

import grpc
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from google.protobuf.timestamp_pb2 import Timestamp
from ig.policy.v1 import policy_pb2, policy_pb2_grpc
from ig_common.grpc_client import aio_channel_as

# The reference gateway asks for decisions as the gateway identity.
CLIENT_IDENTITY = "gateway"

ACTIONS = {"GET": "read", "HEAD": "read", "POST": "write", "PUT": "write", "PATCH": "write", "DELETE": "delete"}
DECISION_TIMEOUT_S = 0.5


def _list(value: str | None) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


def decide_request(request: Request, tenant: str, kind: str, resource_id: str, region: str) -> policy_pb2.DecideRequest:
    headers = request.headers
    moment = datetime.fromisoformat(headers["x-request-time"]) if "x-request-time" in headers else datetime.now(UTC)
    when = Timestamp()
    when.FromDatetime(moment)
    try:
        risk = int(headers.get("x-session-risk", "0"))
    except ValueError:
        risk = -1  # the policy service names the field as invalid
    return policy_pb2.DecideRequest(
        actor=policy_pb2.Actor(id=headers.get("x-user", ""), tenant=headers.get("x-user-tenant", tenant),
                               roles=_list(headers.get("x-roles")), purposes=_list(headers.get("x-purposes"))),
        resource=policy_pb2.Resource(type=kind, id=resource_id, tenant=tenant, purpose=headers.get("x-purpose", ""),
                                     region=headers.get("x-resource-region", region),
                                     classification=headers.get("x-classification", "internal")),
        action=request.query_params.get("action", ACTIONS.get(request.method, "")),
        context=policy_pb2.Context(time=when, network_zone=headers.get("x-network-zone", "unknown"),
                                   device_trust=headers.get("x-device-trust", "unknown"), session_risk=risk,
                                   auth_level=headers.get("x-auth-level", ""), region=region,
                                   break_glass=policy_pb2.BreakGlass(grant=headers["x-ig-break-glass"])
                                   if "x-ig-break-glass" in headers else None),
    )


def problem(status: int, title: str, detail: str, headers: dict[str, str]) -> JSONResponse:
    return JSONResponse({"type": "about:blank", "title": title, "status": status, "detail": detail},
                        status_code=status, headers=headers, media_type="application/problem+json")


def build_gateway(policy_address: str, region: str) -> FastAPI:
    app = FastAPI(title="reference gateway")
    stubs: list[policy_pb2_grpc.PolicyServiceStub] = []

    def policy() -> policy_pb2_grpc.PolicyServiceStub:
        # One persistent channel, opened inside the server's event loop on first use.
        if not stubs:
            stubs.append(policy_pb2_grpc.PolicyServiceStub(aio_channel_as(CLIENT_IDENTITY, policy_address)))
        return stubs[0]

    @app.api_route("/{tenant}/{kind}/{resource_id}", methods=list(ACTIONS))
    async def guarded(request: Request, tenant: str, kind: str, resource_id: str) -> JSONResponse:
        call = policy().Decide(decide_request(request, tenant, kind, resource_id, region), timeout=DECISION_TIMEOUT_S)
        try:
            reply = await call
            metadata = dict(await call.initial_metadata())
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
                return problem(400, "Bad request", error.details() or "invalid request", {})
            return problem(503, "Authorization unavailable", "the policy service could not be asked", {})
        headers = {
            "X-IG-Decision-Id": str(metadata.get("x-ig-decision-id", "")),
            "X-IG-Rule-Id": str(metadata.get("x-ig-rule-id", "")),
            "X-IG-Explanation": str(metadata.get("x-ig-explanation", "")),
        }
        if reply.result == policy_pb2.RESULT_ALLOW:
            # The upstream would be called here; the echo stands in for it.
            return JSONResponse({"tenant": tenant, "type": kind, "id": resource_id}, headers=headers)
        if reply.result == policy_pb2.RESULT_STEP_UP:
            headers["WWW-Authenticate"] = 'Bearer error="insufficient_user_authentication", acr_values="mfa"'
            return problem(401, "Step-up required", headers["X-IG-Explanation"], headers)
        return problem(403, "Forbidden", headers["X-IG-Explanation"], headers)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:8090")
    parser.add_argument("--policy", default="127.0.0.1:50051", help="the Policy Reasoner's gRPC address")
    parser.add_argument("--region", default="region-a")
    args = parser.parse_args()
    host, port = args.listen.rsplit(":", 1)
    config = uvicorn.Config(build_gateway(args.policy, args.region), host=host, port=int(port), log_level="warning")
    asyncio.run(uvicorn.Server(config).serve())


if __name__ == "__main__":
    main()
