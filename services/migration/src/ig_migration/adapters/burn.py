"""Remaining error budget of the affected service, from ig.burn.v1.BurnService/GetBurn."""

from __future__ import annotations

from ig.burn.v1 import burn_pb2, burn_pb2_grpc
from ig_common.grpc_client import aio_channel_as

# The orchestrator asks as itself; ig-migrate run by hand asks with the same identity's certificate (IG_TLS_DIR).
CLIENT_IDENTITY = "migration"


async def remaining_budget(address: str, service: str, deadline_seconds: float = 5.0) -> tuple[float, str]:
    """The smallest remaining budget over the service's SLOs (the one closest to exhaustion) and a description.

    Raises LookupError when BurnService knows no SLO for the service or reports it stale: no evidence of headroom
    is no headroom.
    """
    async with aio_channel_as(CLIENT_IDENTITY, address) as channel:
        stub = burn_pb2_grpc.BurnServiceStub(channel)  # type: ignore[no-untyped-call]
        response = await stub.GetBurn(burn_pb2.GetBurnRequest(service=service), timeout=deadline_seconds)
    slos = [s for s in response.slos if not service or s.service == service]
    if not slos:
        raise LookupError(f"BurnService at {address} reports no SLO for service {service or '<any>'}")
    stale = [s.slo for s in slos if s.stale]
    if stale:
        # A budget computed from old or missing data says nothing about today's headroom.
        raise LookupError(f"BurnService at {address} reports stale SLOs {stale} for service {service or '<any>'}")
    worst = min(slos, key=lambda s: s.remaining_budget)
    return worst.remaining_budget, f"BurnService {address}: SLO {worst.slo} of {worst.service} (worst of {len(slos)})"
