"""AuthZEN Authorization API 1.0 access evaluation: POST /access/v1/evaluation and /access/v1/evaluations.

subject/resource/action/context map onto the same decision as gRPC Decide. ``decision`` is true only for ALLOW;
the result (incl. STEP_UP and its obligations), rule id, explanation and reasons go in the response ``context``.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, FastAPI, Response
from fastapi.responses import JSONResponse
from ig_common.http_server import problem
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt, StrictStr

from ig_policy.api.translate import decision_metadata
from ig_policy.decisions import DecisionService, annotate_span
from ig_policy.domain.losses import DecisionLogUnavailable
from ig_policy.domain.model import Actor, BreakGlass, Context, Decision, DecisionRequest, Resource, Result, rfc3339
from ig_policy.domain.validation import MAX_BATCH, FieldError, validate_request

# The AuthZEN listener's request body cap (ig_common.http_body_limit; 413 above it): a full batch of MAX_BATCH
# evaluations at 8 KiB each. Other listeners keep the 1 MiB default.
MAX_BODY_BYTES = MAX_BATCH * 8 * 1024


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class SubjectProperties(_Model):
    tenant: StrictStr = ""
    roles: list[StrictStr] = Field(default_factory=list)
    purposes: list[StrictStr] = Field(default_factory=list)


class Subject(_Model):
    type: StrictStr = "user"
    id: StrictStr
    properties: SubjectProperties = Field(default_factory=SubjectProperties)


class ResourceProperties(_Model):
    tenant: StrictStr = ""
    purpose: StrictStr = ""
    region: StrictStr = ""
    classification: StrictStr = ""


class ResourceModel(_Model):
    type: StrictStr
    id: StrictStr
    properties: ResourceProperties = Field(default_factory=ResourceProperties)


class ActionModel(_Model):
    name: StrictStr


class BreakGlassModel(_Model):
    # Only the signed grant counts; a justification or expiry alone is self-asserted and denied.
    grant: StrictStr = ""
    justification: StrictStr = ""
    expires_at: AwareDatetime | None = None


class ContextModel(_Model):
    time: AwareDatetime | None = None
    network_zone: StrictStr = ""
    device_trust: StrictStr = ""
    session_risk: StrictInt = 0
    auth_level: StrictStr = ""
    region: StrictStr = ""
    break_glass: BreakGlassModel | None = None


class Evaluation(_Model):
    subject: Subject
    resource: ResourceModel
    action: ActionModel
    context: ContextModel = Field(default_factory=ContextModel)


class PartialEvaluation(_Model):
    subject: Subject | None = None
    resource: ResourceModel | None = None
    action: ActionModel | None = None
    context: ContextModel | None = None


class EvaluationsOptions(_Model):
    evaluations_semantic: Literal["execute_all"] = "execute_all"


class Evaluations(PartialEvaluation):
    evaluations: list[PartialEvaluation] = Field(default_factory=list, max_length=MAX_BATCH)
    options: EvaluationsOptions = Field(default_factory=EvaluationsOptions)


# Domain field names -> where the same value sits in an AuthZEN request.
_FIELD_NAMES = {
    "actor.id": "subject.id", "actor.tenant": "subject.properties.tenant",
    "actor.roles": "subject.properties.roles", "actor.purposes": "subject.properties.purposes",
    "resource.tenant": "resource.properties.tenant", "resource.purpose": "resource.properties.purpose",
    "resource.region": "resource.properties.region", "resource.classification": "resource.properties.classification",
    "action": "action.name",
}


def authzen_field(name: str) -> str:
    for domain_name, authzen_name in _FIELD_NAMES.items():
        if name == domain_name or name.startswith(domain_name + "["):
            return authzen_name + name[len(domain_name):]
    return name


def request_from_evaluation(evaluation: Evaluation) -> DecisionRequest:
    s, r, c = evaluation.subject, evaluation.resource, evaluation.context
    glass = c.break_glass
    grant = BreakGlass(glass.justification, glass.expires_at, glass.grant) if glass else None
    return DecisionRequest(
        actor=Actor(s.id, s.properties.tenant, tuple(s.properties.roles), tuple(s.properties.purposes)),
        resource=Resource(r.type, r.id, r.properties.tenant, r.properties.purpose, r.properties.region,
                          r.properties.classification),
        action=evaluation.action.name,
        context=Context(c.time, c.network_zone, c.device_trust, c.session_risk, c.auth_level, c.region, grant),
    )


def evaluation_response(decision: Decision) -> dict[str, Any]:
    verdict = decision.verdict
    context: dict[str, Any] = {
        "decision_id": decision.decision_id,
        "result": verdict.result.value,
        "rule_id": verdict.rule_id,
        "reason_admin": {"en": verdict.explanation},
        "reasons": [{"rule_id": r.rule_id, "message": r.message} for r in verdict.reasons],
        "obligations": list(verdict.obligations),
        "policy_revision": decision.policy_revision,
        "evaluated_at": rfc3339(decision.evaluated_at),
    }
    if verdict.result is Result.STEP_UP:
        context["step_up"] = {"required": True, "obligations": list(verdict.obligations)}
    return {"decision": verdict.result is Result.ALLOW, "context": context}


def _unavailable(error: DecisionLogUnavailable) -> JSONResponse:
    return problem(503, "Decision log unavailable", str(error))


def _invalid(errors: list[FieldError]) -> JSONResponse:
    fields = [e.field for e in errors]
    return problem(400, "Invalid request", "invalid field(s): " + "; ".join(str(e) for e in errors[:10]),
                   fields=fields)


def _merged(defaults: Evaluations, item: PartialEvaluation, index: int) -> Evaluation | list[FieldError]:
    parts = {name: getattr(item, name) or getattr(defaults, name) for name in ("subject", "resource", "action")}
    missing = [FieldError(f"evaluations[{index}].{name}", "is required (here or at the top level)")
               for name, value in parts.items() if value is None]
    if missing:
        return missing
    context = item.context or defaults.context or ContextModel()
    return Evaluation(subject=parts["subject"], resource=parts["resource"], action=parts["action"], context=context)


def authzen_router(decisions: DecisionService) -> APIRouter:
    router = APIRouter(prefix="/access/v1", tags=["AuthZEN"])

    @router.post("/evaluation", summary="One access evaluation")
    async def evaluation(body: Evaluation, response: Response) -> Any:
        request = request_from_evaluation(body)
        errors = [FieldError(authzen_field(e.field), e.problem)
                  for e in validate_request(request) + decisions.time_errors(request)]
        if errors:
            return _invalid(errors)
        try:
            decision = await decisions.decide(request)
        except DecisionLogUnavailable as error:
            return _unavailable(error)
        annotate_span(decision)
        for name, value in decision_metadata(decision):
            response.headers[name] = value
        return evaluation_response(decision)

    @router.post("/evaluations", summary="Many access evaluations, answered in order")
    async def evaluations(body: Evaluations) -> Any:
        items = body.evaluations or [PartialEvaluation()]
        requests: list[DecisionRequest] = []
        errors: list[FieldError] = []
        for index, item in enumerate(items):
            merged = _merged(body, item, index)
            if isinstance(merged, list):
                errors += merged
                continue
            request = request_from_evaluation(merged)
            errors += [FieldError(f"evaluations[{index}].{authzen_field(e.field)}", e.problem)
                       for e in validate_request(request) + decisions.time_errors(request)]
            requests.append(request)
        if errors:
            return _invalid(errors)
        try:
            answered = await decisions.decide_all(requests)
        except DecisionLogUnavailable as error:
            return _unavailable(error)
        return {"evaluations": [evaluation_response(d) for d in answered]}

    return router


def mount_authzen(app: FastAPI, decisions: DecisionService) -> None:
    app.include_router(authzen_router(decisions))
