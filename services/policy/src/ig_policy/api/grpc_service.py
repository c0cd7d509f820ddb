"""gRPC ig.policy.v1.PolicyService: validate, decide, answer with ids in the initial metadata."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
from ig.policy.v1 import policy_pb2, policy_pb2_grpc
from ig_common.grpc_server import GrpcService

from ig_policy.api.translate import decision_metadata, request_from_proto, response_from_decision
from ig_policy.decisions import DecisionService, annotate_span
from ig_policy.domain.losses import DecisionLogUnavailable
from ig_policy.domain.validation import FieldError, validate_batch_size, validate_request

SERVICE_NAME = policy_pb2.DESCRIPTOR.services_by_name["PolicyService"].full_name
_MAX_LISTED_ERRORS = 10


def _describe(errors: Sequence[FieldError]) -> str:
    shown = "; ".join(str(e) for e in errors[:_MAX_LISTED_ERRORS])
    more = len(errors) - _MAX_LISTED_ERRORS
    return f"invalid argument: {shown}" + (f" (and {more} more)" if more > 0 else "")


class PolicyServicer(policy_pb2_grpc.PolicyServiceServicer):
    def __init__(self, decisions: DecisionService) -> None:
        self._decisions = decisions

    async def Decide(
        self, request: policy_pb2.DecideRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> policy_pb2.DecideResponse:
        domain_request, errors = request_from_proto(request)
        errors += validate_request(domain_request) + self._decisions.time_errors(domain_request)
        if errors:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, _describe(errors))
        try:
            decision = await self._decisions.decide(domain_request)
        except DecisionLogUnavailable as error:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(error))
        annotate_span(decision)
        await context.send_initial_metadata(decision_metadata(decision))
        return response_from_decision(decision)

    async def BatchDecide(
        self, request: policy_pb2.BatchDecideRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> policy_pb2.BatchDecideResponse:
        errors = validate_batch_size(len(request.requests))
        domain_requests = []
        for index, item in enumerate(request.requests):
            domain_request, item_errors = request_from_proto(item)
            item_errors += validate_request(domain_request) + self._decisions.time_errors(domain_request)
            errors += [FieldError(f"requests[{index}].{e.field}", e.problem) for e in item_errors]
            domain_requests.append(domain_request)
        if errors:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, _describe(errors))
        try:
            decisions = await self._decisions.decide_all(domain_requests)
        except DecisionLogUnavailable as error:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(error))
        await context.send_initial_metadata((
            ("x-ig-decision-count", str(len(decisions))),
            ("x-ig-policy-revision", self._decisions.revision),
        ))
        return policy_pb2.BatchDecideResponse(responses=[response_from_decision(d) for d in decisions])


def policy_grpc_service(decisions: DecisionService) -> GrpcService:
    return GrpcService(SERVICE_NAME, PolicyServicer(decisions), policy_pb2_grpc.add_PolicyServiceServicer_to_server)
