# One test (or more) per deciding rule, on the rule's own package.
package ig.rules_test

import data.ig
import data.ig.fixtures

alpha := fixtures.alpha

ctx(patch) := fixtures.with_context(alpha, patch)

test_validate_accepts_the_fixture if ig.validate.valid with input as alpha

test_validate_names_each_bad_field if {
	bad := object.union(alpha, {
		"actor": {"id": "", "roles": "admin", "purposes": [1]},
		"resource": {"purpose": 7, "classification": "secret"},
		"action": "fly",
		"context": {
			"time": "yesterday", "network_zone": "mars", "device_trust": "shiny",
			"session_risk": 101, "break_glass": {"verified": {"justification": "x"}},
		},
	})
	ig.validate.invalid == {
		"actor.id", "actor.roles", "actor.purposes", "resource.purpose", "resource.classification", "action",
		"context.time", "context.network_zone", "context.device_trust", "context.session_risk",
		"context.break_glass",
	} with input as bad
}

test_validate_rejects_missing_device_trust_and_fractional_risk if {
	invalid := ig.validate.invalid with input as object.union(alpha, {"context": {"device_trust": null, "session_risk": 1.5}})
	invalid == {"context.device_trust", "context.session_risk"}
}

test_validate_rejects_a_non_object_grant if {
	ig.validate.invalid == {"context.break_glass"} with input as ctx({"break_glass": "please"})
}

test_tenant_unknown if {
	ids := fixtures.rule_ids(ig.tenant.deny) with input as object.union(alpha, {"actor": {"tenant": "zeta"}})
	ids == {"ig.tenant.unknown", "ig.tenant.mismatch"}
}

test_unknown_resource_tenant if {
	ids := fixtures.rule_ids(ig.tenant.deny) with input as object.union(alpha, {"resource": {"tenant": "zeta"}})
	ids == {"ig.tenant.unknown", "ig.tenant.mismatch"}
	count(ig.tenant.deny) == 1 with input as object.union(alpha, {"actor": {"tenant": "zeta"}, "resource": {"tenant": "zeta"}})
}

test_tenant_match_has_no_denial if count(ig.tenant.deny) == 0 with input as alpha

test_purpose_mismatch if {
	fixtures.rule_ids(ig.purpose.deny) == {"ig.purpose.mismatch"} with input as object.union(alpha, {"actor": {"purposes": ["ads"]}})
}

test_purpose_allow_names_the_action if {
	fixtures.rule_ids(ig.purpose.allow) == {"ig.purpose.allow_export"} with input as object.union(alpha, {"action": "export"})
}

test_rbac_grants_union_of_roles if {
	two_roles := object.union(alpha, {"actor": {"roles": ["editor", "analyst"]}})
	ig.rbac.action_granted with input as object.union(two_roles, {"action": "write"})
	ig.rbac.action_granted with input as object.union(two_roles, {"action": "export"})
	not ig.rbac.action_granted with input as object.union(two_roles, {"action": "delete"})
}

test_rbac_denies_ungranted_action if {
	fixtures.rule_ids(ig.rbac.deny) == {"ig.rbac.action_not_granted"} with input as object.union(alpha, {"action": "delete"})
}

test_window_open_and_closed if {
	count(ig.window.deny) == 0 with input as alpha
	fixtures.rule_ids(ig.window.deny) == {"ig.time.outside_window"} with input as ctx({"time": "2026-01-10T12:00:00Z"})
}

# The local time named in the denial shows which zone the rule read the clock in.
test_window_uses_tenant_time_zone if {
	fixtures.messages(ig.window.deny) == {"Request time 'Saturday 00:30' in the tenant's time zone is outside the tenant's access windows."} with input as ctx({"time": "2026-01-09T23:30:00Z"})
}

test_zones_west_and_east_of_utc if {
	beta := object.union(ctx({"time": "2026-01-05T03:00:00Z"}), {"resource": {"tenant": "beta"}})
	some west in ig.window.deny with input as beta with data.ig.config.tenants.beta.windows as []
	contains(west.message, "'Sunday 22:00'")
	some east in ig.window.deny with input as fixtures.with_context(fixtures.gamma, {"time": "2026-01-09T20:00:00Z"})
	contains(east.message, "'Saturday 05:00'")
}

# Shifting the instant by the zone's offset overflowed OPA's time range near its end (2262-04-11T23:47Z), and the
# window check then passed silently; the clock is now read in the zone itself.
test_window_is_checked_up_to_the_end_of_time if {
	fixtures.messages(ig.window.deny) == {"Request time 'Saturday 00:00' in the tenant's time zone is outside the tenant's access windows."} with input as ctx({"time": "2262-04-11T22:00:00Z"})
}

test_window_bounds_include_start_and_exclude_end if {
	windows := [{"days": ["Monday"], "start": "07:00", "end": "20:00"}, {"days": ["Tuesday"], "start": "22:00", "end": "24:00"}]
	ig.window.open_at(windows, "Monday", "07:00")
	ig.window.open_at(windows, "Monday", "19:59")
	not ig.window.open_at(windows, "Monday", "06:59")
	not ig.window.open_at(windows, "Monday", "20:00")
	ig.window.open_at(windows, "Tuesday", "23:59")
	not ig.window.open_at(windows, "Tuesday", "10:00")
	not ig.window.open_at(windows, "Wednesday", "10:00")
	not ig.window.open_at([], "Monday", "10:00")
}

test_tenant_without_windows_is_always_closed if {
	count(ig.window.deny) == 1 with input as alpha with data.ig.config.tenants.alpha.windows as []
}

test_network_rules if {
	fixtures.rule_ids(ig.network.deny) == {"ig.network.unknown_zone"} with input as ctx({"network_zone": "unknown"})
	fixtures.rule_ids(ig.network.deny) == {"ig.network.zone_not_allowed_for_action"} with input as object.union(ctx({"network_zone": "public"}), {"action": "export"})
	fixtures.rule_ids(ig.network.deny) == {"ig.network.zone_not_allowed"} with input as fixtures.with_context(fixtures.gamma, {"network_zone": "public"})
	count(ig.network.deny) == 0 with input as alpha
}

test_device_requirement_is_the_strictest if {
	ig.device.required == 3 with input as object.union(fixtures.gamma, {"action": "export", "resource": {"classification": "confidential"}})
	ig.device.required_name == "high" with input as object.union(fixtures.gamma, {"action": "export"})
	ig.device.required == 0 with input as alpha
}

test_device_step_up_and_denial if {
	export := object.union(alpha, {"action": "export"})
	fixtures.rule_ids(ig.device.step_up) == {"ig.device.step_up_low_trust"} with input as fixtures.with_context(export, {"device_trust": "low"})
	count(ig.device.step_up) == 0 with input as fixtures.with_context(export, {"device_trust": "low", "auth_level": "mfa"})
	fixtures.rule_ids(ig.device.deny) == {"ig.device.untrusted"} with input as fixtures.with_context(export, {"device_trust": "unknown"})
	fixtures.rule_ids(ig.device.deny) == {"ig.device.untrusted"} with input as object.union(fixtures.with_context(fixtures.gamma, {"device_trust": "low"}), {"action": "export"})
}

test_risk_bands if {
	count(ig.risk.step_up) == 0 with input as ctx({"session_risk": 39})
	fixtures.rule_ids(ig.risk.step_up) == {"ig.risk.step_up"} with input as ctx({"session_risk": 40})
	count(ig.risk.step_up) == 0 with input as ctx({"session_risk": 40, "auth_level": "mfa"})
	fixtures.rule_ids(ig.risk.deny) == {"ig.risk.too_high"} with input as ctx({"session_risk": 80})
	count(ig.risk.step_up) == 0 with input as ctx({"session_risk": 80})
}

test_auth_rules if {
	fixtures.rule_ids(ig.auth.deny) == {"ig.auth.unauthenticated"} with input as ctx({"auth_level": "none"})
	fixtures.rule_ids(ig.auth.step_up) == {"ig.auth.admin_requires_mfa"} with input as object.union(alpha, {"action": "admin"})
	fixtures.rule_ids(ig.auth.step_up) == {"ig.auth.restricted_requires_mfa"} with input as object.union(alpha, {"resource": {"classification": "restricted"}})
	count(ig.auth.step_up) == 0 with input as object.union(ctx({"auth_level": "hwk"}), {"action": "admin"})
}

test_residency if {
	fixtures.rule_ids(ig.residency.deny) == {"ig.residency.cross_region"} with input as ctx({"region": "region-b"})
	count(ig.residency.deny) == 0 with input as alpha
	count(ig.residency.deny) == 0 with input as object.union(alpha, {"actor": {"tenant": "beta"}, "resource": {"tenant": "beta"}, "context": {"region": "region-b"}})
}

test_break_glass_valid_grant if {
	ig.breakglass.valid with input as fixtures.saturday_break_glass
	fixtures.rule_ids(ig.breakglass.allow) == {"ig.breakglass.allow"} with input as fixtures.saturday_break_glass
}

test_break_glass_needs_mfa if {
	grant := fixtures.with_context(fixtures.saturday_break_glass, {"auth_level": "pwd"})
	ig.breakglass.acceptable with input as grant
	not ig.breakglass.valid with input as grant
	fixtures.rule_ids(ig.breakglass.step_up) == {"ig.breakglass.requires_mfa"} with input as grant
}

test_break_glass_faults if {
	base := fixtures.saturday_break_glass
	expired := fixtures.with_grant({"issued_at": "2026-01-10T10:30:00Z", "expires_at": "2026-01-10T11:00:00Z"})
	fixtures.messages(ig.breakglass.deny) == {"The break-glass grant expired at '2026-01-10T11:00:00Z'."} with input as expired
	too_long := fixtures.with_grant({"expires_at": "2026-01-11T12:00:00Z"})
	fixtures.messages(ig.breakglass.deny) == {"A break-glass grant may last at most '60' minutes."} with input as too_long
	thin := fixtures.with_grant({"justification": "  because  "})
	fixtures.rule_ids(ig.breakglass.deny) == {"ig.breakglass.invalid"} with input as thin
	no_role := object.union(base, {"actor": {"roles": ["viewer"]}})
	fixtures.rule_ids(ig.breakglass.deny) == {"ig.breakglass.invalid"} with input as no_role
	disabled := object.union(fixtures.with_grant({"tenant": "beta"}), {"actor": {"tenant": "beta"}, "resource": {"tenant": "beta"}})
	"Break-glass is not enabled for this tenant." in fixtures.messages(ig.breakglass.deny) with input as disabled
	other_tenant := fixtures.with_grant({"tenant": "gamma"})
	fixtures.messages(ig.breakglass.deny) == {"The break-glass grant is for tenant 'gamma', not the resource's tenant 'alpha'."} with input as other_tenant
	not ig.breakglass.requested with input as alpha
}

# Only facts the service verified open anything: a caller's own justification and expiry are not believed.
test_break_glass_self_asserted_is_invalid if {
	self_asserted := fixtures.with_break_glass({"justification": "P1 incident INC-4711 customer outage", "expires_at": "2026-01-10T12:30:00Z"})
	ig.breakglass.requested with input as self_asserted
	not ig.breakglass.acceptable with input as self_asserted
	fixtures.rule_ids(ig.breakglass.deny) == {"ig.breakglass.invalid"} with input as self_asserted
	d := ig.ctx.decision with input as self_asserted
	d.result == "DENY"
	d.rule_id == "ig.breakglass.invalid"
	contains(d.explanation, "signed by an approver the tenant trusts")
}

test_break_glass_rejection_is_the_explanation if {
	refused := fixtures.with_break_glass({"rejection": "The break-glass grant's signature does not verify."})
	fixtures.messages(ig.breakglass.deny) == {"The break-glass grant's signature does not verify."} with input as refused
	count(ig.breakglass.allow) == 0 with input as refused
}

test_break_glass_scope if {
	everything := {"resource_type": "*", "resource_id": "*", "action": "*", "classification": "*"}
	ig.breakglass.valid with input as fixtures.with_grant({"scope": everything})
	some field in ["resource_type", "resource_id", "action", "classification"]
	narrowed := fixtures.with_grant({"scope": object.union(everything, {field: "other"})})
	fixtures.rule_ids(ig.breakglass.deny) == {"ig.breakglass.invalid"} with input as narrowed
}

test_break_glass_scope_each_field_narrows if {
	everything := {"resource_type": "*", "resource_id": "*", "action": "*", "classification": "*"}
	count([field |
		some field in ["resource_type", "resource_id", "action", "classification"]
		narrowed := fixtures.with_grant({"scope": object.union(everything, {field: "other"})})
		not ig.breakglass.in_scope with input as narrowed
	]) == 4
}
