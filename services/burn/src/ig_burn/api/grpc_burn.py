"""gRPC ig.burn.v1.BurnService: the last evaluation, per SLO (the migration service reads it for SLO headroom)."""

from __future__ import annotations

import re

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from ig.burn.v1 import burn_pb2, burn_pb2_grpc

from ig_burn.domain.throttle import THROTTLED
from ig_burn.engine import BurnEngine

_SERVICE = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$")


class BurnServicer(burn_pb2_grpc.BurnServiceServicer):
    def __init__(self, engine: BurnEngine) -> None:
        self._engine = engine

    async def GetBurn(self, request: burn_pb2.GetBurnRequest,
                      context: grpc.aio.ServicerContext[object, object]) -> burn_pb2.GetBurnResponse:
        if request.service and not _SERVICE.fullmatch(request.service):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "service: must be a service name like 'policy'")
        return build_response(self._engine, request.service)


def build_response(engine: BurnEngine, service: str) -> burn_pb2.GetBurnResponse:
    snapshot = engine.snapshot
    response = burn_pb2.GetBurnResponse()
    for name, slo in engine.slos.items():
        if service and slo.service != service:
            continue
        report = snapshot.reports.get(name)
        state = snapshot.states.get(name)
        item = response.slos.add(slo=name, service=slo.service, objective=slo.objective,
                                 throttled=bool(state and state.state == THROTTLED),
                                 stale=snapshot.stale or report is None or not report.complete)
        if report is not None:
            item.monthly_budget_consumed = report.monthly_budget_consumed
            item.weekly_budget_consumed = report.weekly_budget_consumed
            item.remaining_budget = report.remaining_budget
            item.burn_rates.extend(burn_pb2.BurnRate(window=r.window, rate=r.rate) for r in report.burn_rates)
        if snapshot.evaluated_at is not None:
            stamp = Timestamp()
            stamp.FromDatetime(snapshot.evaluated_at)
            item.evaluated_at.CopyFrom(stamp)
    return response
