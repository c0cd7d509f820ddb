# Break-glass: a justified, short-lived emergency grant that lifts the overridable denials
# (data.ig.config.break_glass_overridable) for holders of an allowed role, with MFA. Every use is audited.
package ig.breakglass

import data.ig.lib

requested if is_object(input.context.break_glass)

expires_ns := time.parse_rfc3339_ns(input.context.break_glass.expires_at)

holds_allowed_role if {
	some role in input.actor.roles
	role in setting("roles")
}

# The tenant's break-glass setting, else the default's (the defaults define all four: tests/config_test.rego).
setting(name) := object.get(lib.tenant, ["break_glass", name], data.ig.config.defaults.break_glass[name])

deny contains reason if {
	requested
	not setting("enabled")
	reason := {"rule_id": "ig.breakglass.invalid", "message": "Break-glass is not enabled for this tenant."}
}

deny contains reason if {
	requested
	not holds_allowed_role
	reason := {"rule_id": "ig.breakglass.invalid", "message": "The actor holds no role that may use break-glass."}
}

deny contains reason if {
	requested
	min_justification := setting("min_justification")
	count(trim_space(input.context.break_glass.justification)) < min_justification
	reason := {
		"rule_id": "ig.breakglass.invalid",
		"message": sprintf(
			"A break-glass justification of at least '%v' characters is required.",
			[min_justification],
		),
	}
}

deny contains reason if {
	requested
	expires_ns <= lib.request_ns
	reason := {
		"rule_id": "ig.breakglass.expired",
		"message": sprintf("The break-glass grant expired at '%s'.", [input.context.break_glass.expires_at]),
	}
}

deny contains reason if {
	requested
	max_minutes := setting("max_minutes")
	expires_ns - lib.request_ns > max_minutes * 60000000000
	reason := {
		"rule_id": "ig.breakglass.invalid",
		"message": sprintf("A break-glass grant may last at most '%v' minutes.", [max_minutes]),
	}
}

step_up contains reason if {
	requested
	not lib.has_mfa
	reason := {
		"rule_id": "ig.breakglass.requires_mfa",
		"message": "Break-glass use requires multi-factor authentication.",
		"obligation": "step_up:mfa",
	}
}

# Acceptable: nothing is wrong with the grant itself, though a step-up may still be owed.
acceptable if {
	requested
	count(deny) == 0
}

valid if {
	acceptable
	count(step_up) == 0
}

allow contains reason if {
	valid
	reason := {
		"rule_id": "ig.breakglass.allow",
		"message": sprintf(
			"Break-glass access granted until '%s' with justification '%s'; this use is audited.",
			[input.context.break_glass.expires_at, input.context.break_glass.justification],
		),
	}
}
