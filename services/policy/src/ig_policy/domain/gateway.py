"""What a gateway asks (an HTTP request it is about to forward) onto a decision request, per route.

Envoy's ext_authz ``Check`` and the HTTP forward-auth endpoint (nginx ``auth_request``, Caddy ``forward_auth``,
Traefik ``ForwardAuth``) both describe the request they hold: method, path, host, headers, source address. The
operator says per route where each decision field comes from (``IG_GATEWAY_ROUTES``, JSON), e.g.::

    [{"name": "cases", "path": "/api/{tenant}/cases/{id}",
      "fields": {"resource.type": "const:case", "resource.id": "path:id", "resource.tenant": "path:tenant",
                 "resource.classification": "const:internal", "context.region": "const:region-a"}}]

A source is ``path:<variable>``, ``header:<name>``, ``query:<name>``, ``claim:<name>`` (of the verified JWT) or
``const:<value>``. The actor's id is never configurable: it is the verified principal (the JWT's ``sub`` or the
peer certificate's identity).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ig_policy.domain.model import NETWORK_ZONES, Actor, BreakGlass, Context, DecisionRequest, Resource

SOURCE_KINDS = ("path", "header", "query", "claim", "const")
LIST_FIELDS = ("actor.roles", "actor.purposes")
# Fields a route must map (nothing sensible can stand in for them) and the defaults of the others.
REQUIRED_FIELDS = ("resource.type", "resource.id", "resource.tenant", "resource.classification", "context.region")
DEFAULT_SOURCES = {
    "actor.tenant": "claim:tenant", "actor.roles": "claim:roles", "actor.purposes": "claim:purposes",
    "resource.purpose": "const:", "resource.region": "const:", "context.device_trust": "const:unknown",
    "context.session_risk": "const:0", "context.auth_level": "claim:acr", "context.network_zone": "const:unknown",
}
# Mapped only when a route says so: a signed break-glass grant, e.g. from a header ("header:x-ig-break-glass").
BREAK_GLASS_GRANT = "context.break_glass.grant"
KNOWN_FIELDS = (*REQUIRED_FIELDS, *DEFAULT_SOURCES, "action", BREAK_GLASS_GRANT)
DEFAULT_ACTIONS = {"GET": "read", "HEAD": "read", "OPTIONS": "read", "POST": "write", "PUT": "write",
                   "PATCH": "write", "DELETE": "delete"}
DEFAULT_STEP_UP_MAX_AGE_S = 300


class MappingError(ValueError):
    """A route mapping that cannot work; the message names the route and the key."""


@dataclass(frozen=True)
class Source:
    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"


@dataclass(frozen=True)
class Route:
    name: str
    segments: tuple[str, ...]
    fields: Mapping[str, Source]
    actions: Mapping[str, str]
    zones: tuple[tuple[str, tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]], ...] = ()
    host: str = ""
    step_up_max_age_s: int = DEFAULT_STEP_UP_MAX_AGE_S

    def match(self, host: str, path: str) -> dict[str, str] | None:
        """The path variables when this route serves ``host`` and ``path``, else None."""
        if self.host and host.split(":", 1)[0].lower() != self.host:
            return None
        parts = tuple(p for p in path.split("/") if p)
        if len(parts) != len(self.segments):
            return None
        variables: dict[str, str] = {}
        for pattern, part in zip(self.segments, parts, strict=True):
            if pattern.startswith("{"):
                variables[pattern[1:-1]] = part
            elif pattern != part:
                return None
        return variables


@dataclass(frozen=True)
class GatewayRequest:
    """The request a gateway holds, as it describes it (header names lower case)."""

    method: str
    path: str
    host: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    source_address: str = ""
    time: datetime | None = None  # when the gateway saw it, if it says


@dataclass(frozen=True)
class Principal:
    """Who the end user is, verified: a JWT's subject and claims, or a peer certificate's identity."""

    id: str
    claims: Mapping[str, Any] = field(default_factory=dict)


def _source(text: Any, where: str) -> Source:
    if not isinstance(text, str) or ":" not in text:
        raise MappingError(f"{where}: expected '<kind>:<name>' with kind one of {', '.join(SOURCE_KINDS)}, "
                           f"got {text!r}")
    kind, name = text.split(":", 1)
    if kind not in SOURCE_KINDS:
        raise MappingError(f"{where}: unknown source kind {kind!r} (one of {', '.join(SOURCE_KINDS)})")
    if kind != "const" and not name:
        raise MappingError(f"{where}: {kind}: needs a name")
    return Source(kind, name.lower() if kind == "header" else name)


def _route(raw: Any, index: int) -> Route:
    where = f"routes[{index}]"
    if not isinstance(raw, dict):
        raise MappingError(f"{where}: expected an object")
    unknown = set(raw) - {"name", "path", "host", "fields", "actions", "zones", "step_up_max_age_s"}
    if unknown:
        raise MappingError(f"{where}: unknown keys {sorted(unknown)}")
    name, path = raw.get("name"), raw.get("path")
    if not isinstance(name, str) or not name:
        raise MappingError(f"{where}.name: is required")
    where = f"routes[{index}] ({name})"
    if not isinstance(path, str) or not path.startswith("/"):
        raise MappingError(f"{where}.path: an absolute path template such as '/api/{{tenant}}/cases/{{id}}'")
    segments = tuple(p for p in path.split("/") if p)
    variables = {s[1:-1] for s in segments if s.startswith("{") and s.endswith("}") and len(s) > 2}
    if any(("{" in s or "}" in s) and s[1:-1] not in variables for s in segments):
        raise MappingError(f"{where}.path: a variable is a whole segment in braces, e.g. '{{id}}'")
    fields_raw = raw.get("fields")
    if not isinstance(fields_raw, dict):
        raise MappingError(f"{where}.fields: is required (an object: decision field -> source)")
    fields = {key: _source(value, f"{where}.fields.{key}") for key, value in fields_raw.items()}
    for key, source in fields.items():
        if key not in KNOWN_FIELDS:
            raise MappingError(f"{where}.fields.{key}: not a decision field (one of {', '.join(KNOWN_FIELDS)})")
        if source.kind == "path" and source.name not in variables:
            raise MappingError(f"{where}.fields.{key}: path variable {{{source.name}}} is not in {path!r}")
        if key == "context.network_zone" and source.kind == "const" and source.name not in NETWORK_ZONES:
            raise MappingError(f"{where}.fields.{key}: must be one of {', '.join(NETWORK_ZONES)}")
    missing = [key for key in REQUIRED_FIELDS if key not in fields]
    if missing:
        raise MappingError(f"{where}.fields: {', '.join(missing)} must be mapped")
    actions = raw.get("actions", DEFAULT_ACTIONS)
    if not isinstance(actions, dict) or not all(isinstance(v, str) and v for v in actions.values()):
        raise MappingError(f"{where}.actions: an object HTTP method -> action name")
    zones_raw = raw.get("zones", {})
    if not isinstance(zones_raw, dict):
        raise MappingError(f"{where}.zones: an object zone -> list of CIDR ranges")
    zones = []
    for zone, cidrs in zones_raw.items():
        if zone not in NETWORK_ZONES or not isinstance(cidrs, list):
            raise MappingError(f"{where}.zones.{zone}: a zone ({', '.join(NETWORK_ZONES)}) -> list of CIDRs")
        try:
            zones.append((zone, tuple(ipaddress.ip_network(c) for c in cidrs)))
        except (ValueError, TypeError) as error:
            raise MappingError(f"{where}.zones.{zone}: {error}") from error
    max_age = raw.get("step_up_max_age_s", DEFAULT_STEP_UP_MAX_AGE_S)
    if not isinstance(max_age, int) or isinstance(max_age, bool) or not 0 <= max_age <= 86_400:
        raise MappingError(f"{where}.step_up_max_age_s: seconds, 0..86400")
    host = raw.get("host", "")
    if not isinstance(host, str):
        raise MappingError(f"{where}.host: a host name")
    return Route(name, segments, {**{k: _source(v, k) for k, v in DEFAULT_SOURCES.items()}, **fields},
                 {m.upper(): a for m, a in actions.items()}, tuple(zones), host.lower(), max_age)


def parse_routes(raw: Any) -> tuple[Route, ...]:
    """The routes of ``IG_GATEWAY_ROUTES`` (a JSON list), or MappingError naming what is wrong."""
    if not isinstance(raw, list):
        raise MappingError("routes: expected a JSON list of routes")
    routes = tuple(_route(item, index) for index, item in enumerate(raw))
    names = [r.name for r in routes]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise MappingError(f"routes: duplicate names {duplicated}")
    return routes


def find_route(routes: Sequence[Route], request: GatewayRequest) -> tuple[Route, dict[str, str]] | None:
    for route in routes:
        variables = route.match(request.host, request.path)
        if variables is not None:
            return route, variables
    return None


def _value(source: Source, request: GatewayRequest, variables: Mapping[str, str], principal: Principal) -> Any:
    if source.kind == "const":
        return source.name
    if source.kind == "path":
        return variables.get(source.name, "")
    if source.kind == "header":
        return request.headers.get(source.name, "")
    if source.kind == "query":
        return request.query.get(source.name, "")
    return principal.claims.get(source.name, "")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _texts(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(item.strip() for item in value.replace(" ", ",").split(",") if item.strip())
    if isinstance(value, list):
        return tuple(str(item) for item in value)
    return ()


def _zone(route: Route, address: str) -> str | None:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    for zone, networks in route.zones:
        if any(ip in network for network in networks):
            return zone
    return None


def decision_request(route: Route, variables: Mapping[str, str], request: GatewayRequest, principal: Principal,
                     ) -> DecisionRequest:
    """The decision request for ``request`` on ``route``; the context time is left for the service's clock."""
    def get(key: str) -> Any:
        return _value(route.fields[key], request, variables, principal)

    risk_text = str(get("context.session_risk")).strip()
    try:
        risk = int(risk_text)
    except ValueError:
        risk = -1  # validation names context.session_risk
    action = _text(get("action")) if "action" in route.fields else ""
    zone = _zone(route, request.source_address) if route.zones else None
    grant = _text(get(BREAK_GLASS_GRANT)).strip() if BREAK_GLASS_GRANT in route.fields else ""
    return DecisionRequest(
        actor=Actor(principal.id, _text(get("actor.tenant")), _texts(get("actor.roles")),
                    _texts(get("actor.purposes"))),
        resource=Resource(_text(get("resource.type")), _text(get("resource.id")), _text(get("resource.tenant")),
                          _text(get("resource.purpose")), _text(get("resource.region")),
                          _text(get("resource.classification"))),
        action=action or route.actions.get(request.method.upper(), ""),
        context=Context(None, zone or _text(get("context.network_zone")), _text(get("context.device_trust")),
                        risk, _text(get("context.auth_level")), _text(get("context.region")),
                        BreakGlass(grant=grant) if grant else None),
    )


def step_up_challenge(obligations: Sequence[str], max_age_s: int, description: str) -> str:
    """RFC 9470: ``WWW-Authenticate: Bearer error="insufficient_user_authentication", ...``."""
    acr = [o.split(":", 1)[1] for o in obligations if o.startswith("step_up:") and o.split(":", 1)[1]]
    quoted = description.replace("\\", "").replace('"', "'")
    parts = ['error="insufficient_user_authentication"', f'error_description="{quoted}"']
    if acr:
        parts.append(f'acr_values="{" ".join(acr)}"')
    if max_age_s:
        parts.append(f"max_age={max_age_s}")
    return "Bearer " + ", ".join(parts)
