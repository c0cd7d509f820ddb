"""What a gateway asks and what it gets back, independent of gRPC, HTTP or OPA."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

NETWORK_ZONES = ("corp", "vpn", "public", "unknown")
DEVICE_TRUST_LEVELS = ("high", "medium", "low", "unknown")
ENGINE_UNAVAILABLE = "ig.system.engine_unavailable"


class Result(enum.Enum):
    ALLOW = "ALLOW"
    DENY = "DENY"
    STEP_UP = "STEP_UP"


@dataclass(frozen=True)
class Actor:
    id: str
    tenant: str
    roles: tuple[str, ...] = ()
    purposes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Resource:
    type: str
    id: str
    tenant: str
    purpose: str = ""
    region: str = ""
    classification: str = ""


@dataclass(frozen=True)
class BreakGlass:
    """What a request says about break-glass. Only ``grant`` (a signed token) can open anything; a justification
    or expiry sent without one is self-asserted and never reaches the policy (ig_policy.breakglass)."""

    justification: str = ""
    expires_at: datetime | None = None
    grant: str = ""


@dataclass(frozen=True)
class Context:
    time: datetime | None
    network_zone: str = ""
    device_trust: str = ""
    session_risk: int = 0
    auth_level: str = ""
    region: str = ""
    break_glass: BreakGlass | None = None


@dataclass(frozen=True)
class DecisionRequest:
    actor: Actor
    resource: Resource
    action: str
    context: Context

    def to_policy_input(self, now: datetime | None = None, serving_region: str | None = None,
                        break_glass: dict[str, Any] | None = None) -> dict[str, Any]:
        """The document the Rego policies read as ``input``. The service passes what it knows better than the
        caller: ``now`` (its clock), at which time windows and expiries are judged instead of the time sent,
        ``serving_region`` (its own region), which residency is judged on instead of the region sent, and
        ``break_glass``, what it verified of the request's grant (ig_policy.breakglass): a request asking for
        break-glass without it hands the policy nothing to believe, so it is denied."""
        moment = now if now is not None else self.context.time
        context: dict[str, Any] = {
            "time": rfc3339(moment) if moment else "",
            "network_zone": self.context.network_zone,
            "device_trust": self.context.device_trust,
            "session_risk": self.context.session_risk,
            "auth_level": self.context.auth_level,
            "region": serving_region if serving_region is not None else self.context.region,
        }
        if self.context.break_glass is not None:
            context["break_glass"] = break_glass if break_glass is not None else {}
        return {
            "actor": {"id": self.actor.id, "tenant": self.actor.tenant, "roles": list(self.actor.roles),
                      "purposes": list(self.actor.purposes)},
            "resource": {"type": self.resource.type, "id": self.resource.id, "tenant": self.resource.tenant,
                         "purpose": self.resource.purpose, "region": self.resource.region,
                         "classification": self.resource.classification},
            "action": self.action,
            "context": context,
        }


@dataclass(frozen=True)
class Reason:
    rule_id: str
    message: str


@dataclass(frozen=True)
class Verdict:
    """The engine's answer before it gets an id: result, primary rule, all reasons, obligations."""

    result: Result
    rule_id: str
    explanation: str
    reasons: tuple[Reason, ...]
    obligations: tuple[str, ...] = ()


@dataclass(frozen=True)
class Decision:
    decision_id: str
    verdict: Verdict
    policy_revision: str
    evaluated_at: datetime
    latency_ms: float = 0.0
    sensitive_values: frozenset[str] = field(default_factory=frozenset)

    @property
    def result(self) -> Result:
        return self.verdict.result

    @property
    def rule_id(self) -> str:
        return self.verdict.rule_id


def rfc3339(moment: datetime) -> str:
    """UTC, second precision or finer, with a Z: the form OPA's time.parse_rfc3339_ns reads."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
