# Input validation: malformed input is denied here, before any other rule could be fooled by it.
package ig.validate

import data.ig.lib

limits := data.ig.config.limits

required_strings := [
	["actor", "id"], ["actor", "tenant"], ["resource", "type"], ["resource", "id"],
	["resource", "tenant"], ["context", "region"], ["context", "auth_level"],
]

optional_strings := [["resource", "purpose"], ["resource", "region"]]

string_lists := [["actor", "roles"], ["actor", "purposes"]]

invalid contains "input" if not is_object(input)

invalid contains concat(".", path) if {
	some path in required_strings
	not bounded_string(object.get(input, path, null), 1)
}

invalid contains concat(".", path) if {
	some path in optional_strings
	not bounded_string(object.get(input, path, ""), 0)
}

invalid contains concat(".", path) if {
	some path in string_lists
	not string_list(object.get(input, path, []))
}

invalid contains "action" if not object.get(input, "action", null) in data.ig.config.actions

invalid contains "resource.classification" if {
	not object.get(input, ["resource", "classification"], null) in data.ig.config.classifications
}

invalid contains "context.network_zone" if not object.get(input, ["context", "network_zone"], null) in data.ig.config.zones

invalid contains "context.device_trust" if {
	not object.get(input, ["context", "device_trust"], null) in object.keys(data.ig.config.device_trust_levels)
}

invalid contains "context.session_risk" if not risk_score(object.get(input, ["context", "session_risk"], null))

invalid contains "context.time" if not timestamp(object.get(input, ["context", "time"], null))

invalid contains "context.break_glass" if {
	grant := object.get(input, ["context", "break_glass"], null)
	grant != null
	not break_glass_grant(grant)
}

bounded_string(value, minimum) if {
	is_string(value)
	count(value) >= minimum
	count(value) <= limits.max_string
}

string_list(value) if {
	is_array(value)
	count(value) <= limits.max_list
	every item in value {
		bounded_string(item, 1)
	}
}

risk_score(value) if {
	is_number(value)
	round(value) == value
	value >= 0
	value <= 100
}

timestamp(value) if {
	is_string(value)
	count(value) <= 64
	_ = time.parse_rfc3339_ns(value)
}

# What the policy service hands over about break-glass (ig.breakglass): {} (nothing verified), a rejection, or
# the verified facts of a signed grant. Other keys (a caller's self-asserted justification) are ignored.
break_glass_grant(grant) if {
	is_object(grant)
	rejection_text(object.get(grant, "rejection", ""))
	verified_facts(object.get(grant, "verified", null))
}

rejection_text(text) if {
	is_string(text)
	count(text) <= 1024
}

verified_facts(facts) if facts == null

verified_facts(facts) if {
	is_object(facts)
	bounded_string(facts.approver, 1)
	bounded_string(facts.approver_key_id, 1)
	bounded_string(facts.tenant, 1)
	bounded_string(facts.jti, 1)
	is_string(facts.justification)
	count(facts.justification) <= 1024
	timestamp(facts.issued_at)
	timestamp(facts.expires_at)
	every field in ["resource_type", "resource_id", "action", "classification"] {
		bounded_string(object.get(facts.scope, field, null), 1)
	}
}

# Two definitions: `count(invalid) == 0` is the definition, and it names each bad field, but walking every field
# one by one is the costliest part of a decision. The first definition is a shortcut that only ever holds for input
# the second accepts too (each of its checks is at least as strict), so well-formed requests stop there:
# - one concat both proves the strings are strings and, with their total within max_string, bounds each one;
# - `x >= 0; x <= 100` only holds for numbers (OPA orders null < booleans < numbers < strings < ...);
# - a request with long strings or long lists just takes the second definition.
valid if {
	actor := input.actor
	resource := input.resource
	context := input.context
	well_formed_grant
	roles := object.get(actor, "roles", [])
	count(roles) <= limits.max_list
	purposes := object.get(actor, "purposes", [])
	count(purposes) <= limits.max_list
	non_empty := array.concat(
		array.concat(
			[actor.id, actor.tenant, resource.type, resource.id, resource.tenant, context.region, context.auth_level],
			roles,
		),
		purposes,
	)
	not "" in non_empty
	everything := array.concat(non_empty, [object.get(resource, "purpose", ""), object.get(resource, "region", "")])
	count(concat("", everything)) <= limits.max_string
	input.action in data.ig.config.actions
	resource.classification in data.ig.config.classifications
	context.network_zone in data.ig.config.zones
	_ = data.ig.config.device_trust_levels[context.device_trust]
	round(context.session_risk) == context.session_risk
	context.session_risk >= 0
	context.session_risk <= 100
	count(context.time) <= 64
	_ = lib.request_ns
}

valid if count(invalid) == 0

# Exactly the grant condition of the field-by-field check (no grant, or a well-formed one), for the shortcut.
well_formed_grant if object.get(input.context, "break_glass", null) == null

well_formed_grant if break_glass_grant(input.context.break_glass)

deny contains reason if {
	some field in invalid
	reason := {
		"rule_id": "ig.input.invalid",
		"message": sprintf("Input field %s is missing or malformed, so the request is denied.", [field]),
	}
}
