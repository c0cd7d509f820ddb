"""The per-route mapping that Envoy's Check and forward-auth share: parsing (a bad mapping stops start-up naming
the route and key) and how a gateway's request fills a decision request."""

from __future__ import annotations

from typing import Any

import pytest
from ig_common.settings import SettingsError, load_settings
from ig_policy.domain.gateway import (
    GatewayRequest,
    MappingError,
    Principal,
    decision_request,
    find_route,
    parse_routes,
    step_up_challenge,
)
from ig_policy.settings import Settings

REQUIRED = {"IG_DATABASE_URL": "postgresql://ig@127.0.0.1:1/ig", "IG_KAFKA_BOOTSTRAP": "127.0.0.1:1"}
FIELDS = {"resource.type": "const:case", "resource.id": "path:id", "resource.tenant": "path:tenant",
          "resource.classification": "const:internal", "context.region": "const:region-a"}
ROUTE: dict[str, Any] = {"name": "cases", "path": "/api/{tenant}/cases/{id}", "fields": FIELDS}


def test_a_request_fills_the_decision_from_path_headers_claims_and_source_address() -> None:
    routes = parse_routes([{**ROUTE, "fields": {**FIELDS, "resource.purpose": "header:X-Purpose",
                                                "context.session_risk": "header:x-risk", "action": "query:action"},
                            "zones": {"vpn": ["192.0.2.0/24"], "corp": ["10.0.0.0/8"]}}])
    request = GatewayRequest("POST", "/api/alpha/cases/c-1", headers={"x-purpose": "investigation", "x-risk": "12"},
                             query={"action": "export"}, source_address="10.9.8.7")
    found = find_route(routes, request)
    assert found is not None
    route, variables = found
    asked = decision_request(route, variables, request, Principal("u-alice", {
        "tenant": "alpha", "roles": ["analyst"], "purposes": "investigation audit", "acr": "mfa"}))
    assert (asked.actor.id, asked.actor.tenant, asked.actor.roles, asked.actor.purposes) == (
        "u-alice", "alpha", ("analyst",), ("investigation", "audit"))
    assert (asked.resource.type, asked.resource.id, asked.resource.tenant, asked.resource.purpose) == (
        "case", "c-1", "alpha", "investigation")
    assert asked.action == "export" and asked.context.session_risk == 12
    assert (asked.context.network_zone, asked.context.auth_level, asked.context.device_trust) == (
        "corp", "mfa", "unknown")


def test_a_break_glass_grant_comes_only_from_where_the_route_maps_it() -> None:
    request = GatewayRequest("GET", "/api/alpha/cases/c-1", headers={"x-ig-break-glass": "eyJ.signed.grant"})
    mapped = parse_routes([{**ROUTE, "fields": {**FIELDS, "context.break_glass.grant": "header:X-IG-Break-Glass"}}])
    found = find_route(mapped, request)
    assert found is not None
    glass = decision_request(*found, request, Principal("u")).context.break_glass
    assert glass is not None and glass.grant == "eyJ.signed.grant"
    without = find_route(mapped, GatewayRequest("GET", "/api/alpha/cases/c-1"))
    assert without is not None
    assert decision_request(*without, GatewayRequest("GET", "/api/alpha/cases/c-1"), Principal("u")
                            ).context.break_glass is None, "no header: no break-glass asked for"
    unmapped = find_route(parse_routes([ROUTE]), request)
    assert unmapped is not None
    assert decision_request(*unmapped, request, Principal("u")).context.break_glass is None


def test_the_action_defaults_to_the_method_and_other_paths_do_not_match() -> None:
    routes = parse_routes([ROUTE])
    found = find_route(routes, GatewayRequest("DELETE", "/api/beta/cases/x"))
    assert found is not None
    assert decision_request(*found, GatewayRequest("DELETE", "/api/beta/cases/x"), Principal("u")).action == "delete"
    assert find_route(routes, GatewayRequest("GET", "/api/beta/cases")) is None
    assert find_route(routes, GatewayRequest("GET", "/api/beta/files/x")) is None


def test_the_step_up_challenge_is_rfc_9470() -> None:
    assert step_up_challenge(["step_up:mfa"], 300, 'needs "MFA"') == (
        'Bearer error="insufficient_user_authentication", error_description="needs \'MFA\'", acr_values="mfa", '
        'max_age=300')


@pytest.mark.parametrize(("routes", "named"), [
    ({"name": "x"}, "routes[0] (x).path"),
    ([{**ROUTE, "fields": {**FIELDS, "resource.id": "path:case"}}], "routes[0] (cases).fields.resource.id: path "
                                                                     "variable {case} is not in"),
    ([{**ROUTE, "fields": {**FIELDS, "resource.id": "cookie:id"}}], "unknown source kind 'cookie'"),
    ([{**ROUTE, "fields": {**FIELDS, "actor.id": "header:x-user"}}], "fields.actor.id: not a decision field"),
    ([{**ROUTE, "fields": {k: v for k, v in FIELDS.items() if k != "resource.tenant"}}],
     "routes[0] (cases).fields: resource.tenant must be mapped"),
    ([{**ROUTE, "zones": {"corp": ["10.0.0.0/33"]}}], "routes[0] (cases).zones.corp"),
    ([ROUTE, ROUTE], "duplicate names ['cases']"),
])
def test_a_malformed_mapping_is_named(routes: Any, named: str) -> None:
    with pytest.raises(MappingError, match=None) as raised:
        parse_routes(routes if isinstance(routes, list) else [routes])
    assert named in str(raised.value)


def test_a_malformed_mapping_stops_start_up_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("IG_GATEWAY_ROUTES", '[{"name": "cases", "path": "/api/{tenant}", "fields": {}}]')
    with pytest.raises(SettingsError):
        load_settings(Settings)
    err = capsys.readouterr().err
    assert "invalid setting IG_GATEWAY_ROUTES" in err and "routes[0] (cases).fields" in err


def test_jwt_settings_must_come_together(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    key = tmp_path / "idp.pem"
    key.write_text("-----BEGIN PUBLIC KEY-----\n")
    monkeypatch.setenv("IG_GATEWAY_JWT_PUBLIC_KEY_FILE", str(key))
    with pytest.raises(SettingsError):
        load_settings(Settings)
