"""Field-by-field checks of a decision request; each error names the field as the contract spells it."""

from __future__ import annotations

from dataclasses import dataclass

from ig_policy.domain.model import DEVICE_TRUST_LEVELS, NETWORK_ZONES, DecisionRequest

MAX_STRING = 256
MAX_LIST = 64
MAX_JUSTIFICATION = 1024
MAX_GRANT = 8192
MAX_BATCH = 1000


@dataclass(frozen=True)
class FieldError:
    field: str
    problem: str

    def __str__(self) -> str:
        return f"{self.field}: {self.problem}"


def _text(field: str, value: str, *, required: bool, limit: int = MAX_STRING) -> list[FieldError]:
    if required and not value:
        return [FieldError(field, "is required")]
    if len(value) > limit:
        return [FieldError(field, f"must be at most {limit} characters")]
    if "\x00" in value:
        return [FieldError(field, "must not contain NUL characters")]
    return []


def _texts(field: str, values: tuple[str, ...]) -> list[FieldError]:
    if len(values) > MAX_LIST:
        return [FieldError(field, f"must hold at most {MAX_LIST} items")]
    errors: list[FieldError] = []
    for index, value in enumerate(values):
        errors += _text(f"{field}[{index}]", value, required=True)
    return errors


def _choice(field: str, value: str, choices: tuple[str, ...]) -> list[FieldError]:
    if value not in choices:
        return [FieldError(field, f"must be one of {', '.join(choices)}")]
    return []


def validate_request(request: DecisionRequest, prefix: str = "") -> list[FieldError]:
    """Every problem with ``request``; empty means well-formed (the policy still judges the content)."""
    actor, resource, context = request.actor, request.resource, request.context
    errors = [
        *_text("actor.id", actor.id, required=True),
        *_text("actor.tenant", actor.tenant, required=True),
        *_texts("actor.roles", actor.roles),
        *_texts("actor.purposes", actor.purposes),
        *_text("resource.type", resource.type, required=True),
        *_text("resource.id", resource.id, required=True),
        *_text("resource.tenant", resource.tenant, required=True),
        *_text("resource.purpose", resource.purpose, required=False),
        *_text("resource.region", resource.region, required=False),
        *_text("resource.classification", resource.classification, required=True),
        *_text("action", request.action, required=True, limit=64),
        *_choice("context.network_zone", context.network_zone, NETWORK_ZONES),
        *_choice("context.device_trust", context.device_trust, DEVICE_TRUST_LEVELS),
        *_text("context.auth_level", context.auth_level, required=True, limit=32),
        *_text("context.region", context.region, required=True),
    ]
    if context.time is None:
        errors.append(FieldError("context.time", "is required"))
    if not 0 <= context.session_risk <= 100:
        errors.append(FieldError("context.session_risk", "must be between 0 and 100"))
    grant = context.break_glass
    if grant is not None:
        # Only the signed grant is judged (ig_policy.breakglass); the rest is bounded so it can be logged.
        errors += _text("context.break_glass.justification", grant.justification, required=False,
                        limit=MAX_JUSTIFICATION)
        errors += _text("context.break_glass.grant", grant.grant, required=False, limit=MAX_GRANT)
    return [FieldError(prefix + e.field, e.problem) for e in errors]


def validate_batch_size(count: int) -> list[FieldError]:
    if count == 0:
        return [FieldError("requests", "must hold at least one request")]
    if count > MAX_BATCH:
        return [FieldError("requests", f"must hold at most {MAX_BATCH} requests, got {count}")]
    return []
