"""Which tenants a service may serve, judged on the region it serves from (its own IG_REGION).

A tenant pinned to a region is served only there. The pins are the policy's own data (the document OPA loads,
``policies/rego/ig/config/data.json``: ``tenants.<name>.residency.pinned_region``, else
``defaults.residency.pinned_region``), so every service that gates on residency and ``ig.residency.cross_region``
read one source. Nothing a request carries (a header, a field, a forwarded value) takes part: the serving region
is configuration, the tenant is the verified caller's.

Mechanism only: the document's format and the lookup. What a refusal looks like (HTTP 403, a gRPC status) and
where it is checked belongs to each service.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import structlog


class InvalidResidencyData(ValueError):
    """The residency document cannot be read as the policy's data; start-up stops on it."""


@dataclass(frozen=True)
class ResidencyRefusal:
    tenant: str
    pinned_region: str
    serving_region: str

    @property
    def detail(self) -> str:
        return f"tenant {self.tenant!r} is pinned to {self.pinned_region} and is not served from {self.serving_region}"


@dataclass(frozen=True)
class Residency:
    serving_region: str
    pins: Mapping[str, str] = field(default_factory=dict)
    default_pin: str | None = None

    @property
    def configured(self) -> bool:
        """False for residency data that pins no tenant (nothing is ever refused)."""
        return bool(self.pins) or self.default_pin is not None

    def pinned_region(self, tenant: str) -> str | None:
        return self.pins.get(tenant, self.default_pin)

    def refusal(self, tenant: str) -> ResidencyRefusal | None:
        """None when the tenant may be served here (global, or pinned to this region)."""
        pinned = self.pinned_region(tenant)
        if pinned is None or pinned == self.serving_region:
            return None
        return ResidencyRefusal(tenant, pinned, self.serving_region)


def residency_from_policy_data(document: str, serving_region: str) -> Residency:
    """The pins of the policy data document (JSON), for a service serving from ``serving_region``."""
    try:
        data = json.loads(document)
    except ValueError as error:
        raise InvalidResidencyData(f"not JSON: {error}") from error
    if not isinstance(data, dict):
        raise InvalidResidencyData("not a JSON object")
    tenants = data.get("tenants", {})
    if not isinstance(tenants, dict):
        raise InvalidResidencyData("'tenants' is not an object")
    defaults = data.get("defaults", {})
    default_pin = _pin(defaults, "defaults") if isinstance(defaults, dict) else None
    pins: dict[str, str] = {}
    for name, config in tenants.items():
        if not isinstance(config, dict):
            raise InvalidResidencyData(f"tenants.{name} is not an object")
        pin = _pin(config, f"tenants.{name}")
        if pin is not None:
            pins[str(name)] = pin
    return Residency(serving_region, pins, default_pin)


def check_residency_file(value: str) -> str:
    """A settings validator's body: ``value`` stripped, after checking the file it names reads as the policy's data.
    ValueError otherwise, so start-up stops naming the setting: a service that stores or serves tenants' data never
    starts without knowing which tenants its region may serve (unset would serve every tenant everywhere)."""
    path = value.strip()
    if not path:
        raise ValueError("unset: name the policy data document that pins tenants to regions (the one OPA loads, "
                         "policies/rego/ig/config/data.json); a service holding tenants' data does not start "
                         "without it")
    try:
        residency_from_policy_data(Path(path).read_text(), "any")
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: not the policy's residency data ({error})") from error
    return path


def load_residency(path: str, serving_region: str) -> Residency:
    """The pins of the policy data file at ``path`` for ``serving_region``."""
    return residency_from_policy_data(Path(path).read_text(), serving_region)


def log_when_unconfigured(residency: Residency) -> None:
    """At a gate's start: residency data that pins no tenant serves every tenant here, which an operator must be
    able to see."""
    if not residency.configured:
        structlog.get_logger(__name__).warning(
            "residency_unconfigured", region=residency.serving_region,
            detail="the residency data (IG_TENANT_RESIDENCY_FILE) pins no tenant: every tenant is served here")


def _pin(config: Mapping[str, object], where: str) -> str | None:
    residency = config.get("residency", {})
    if not isinstance(residency, dict):
        raise InvalidResidencyData(f"{where}.residency is not an object")
    pinned = residency.get("pinned_region")
    if pinned is None:
        return None
    if not isinstance(pinned, str) or not pinned:
        raise InvalidResidencyData(f"{where}.residency.pinned_region is not a region name")
    return pinned
