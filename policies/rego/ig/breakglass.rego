# Break-glass: a justified, short-lived emergency grant that lifts the overridable denials
# (data.ig.config.break_glass_overridable) for holders of an allowed role, with MFA. Every use is audited.
package ig.breakglass

import data.ig.lib

grant := input.context.break_glass

settings := lib.tenant.break_glass

requested if is_object(grant)

expires_ns := time.parse_rfc3339_ns(grant.expires_at)

deny contains reason if {
	requested
	not settings.enabled
	reason := {"rule_id": "ig.breakglass.invalid", "message": "Break-glass is not enabled for this tenant."}
}

deny contains reason if {
	requested
	count({role | some role in input.actor.roles; role in settings.roles}) == 0
	reason := {"rule_id": "ig.breakglass.invalid", "message": "The actor holds no role that may use break-glass."}
}

deny contains reason if {
	requested
	count(trim_space(grant.justification)) < settings.min_justification
	reason := {
		"rule_id": "ig.breakglass.invalid",
		"message": sprintf(
			"A break-glass justification of at least '%v' characters is required.",
			[settings.min_justification],
		),
	}
}

deny contains reason if {
	requested
	expires_ns <= lib.request_ns
	reason := {
		"rule_id": "ig.breakglass.expired",
		"message": sprintf("The break-glass grant expired at '%s'.", [grant.expires_at]),
	}
}

deny contains reason if {
	requested
	expires_ns - lib.request_ns > settings.max_minutes * 60000000000
	reason := {
		"rule_id": "ig.breakglass.invalid",
		"message": sprintf("A break-glass grant may last at most '%v' minutes.", [settings.max_minutes]),
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
			[grant.expires_at, grant.justification],
		),
	}
}
