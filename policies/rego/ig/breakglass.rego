# Break-glass: an emergency grant, signed by an approver the tenant trusts, that lifts the overridable denials
# (data.ig.config.break_glass_overridable) for holders of an allowed role, with MFA. Every use is audited.
#
# The policy service verifies the grant (signature, the approver's trust for the tenant, tenant, subject, issue
# and expiry times at the server's clock) and hands over only what it verified, as
# context.break_glass.verified = {approver, approver_key_id, tenant, scope, justification, jti, issued_at,
# expires_at}; a grant it refused arrives as {"rejection": "<which check failed>"}, a request without one as {}.
# Nothing else a caller sends about break-glass is believed.
package ig.breakglass

import data.ig.lib

requested if is_object(input.context.break_glass)

verified if is_object(input.context.break_glass.verified)

grant := input.context.break_glass.verified

expires_ns := time.parse_rfc3339_ns(grant.expires_at)

self_asserted := concat(" ", [
	"Break-glass needs a grant signed by an approver the tenant trusts;",
	"a justification or expiry sent without one is not accepted.",
])

holds_allowed_role if {
	some role in input.actor.roles
	role in setting("roles")
}

# The tenant's break-glass setting, else the default's (the defaults define all four: tests/config_test.rego).
setting(name) := object.get(lib.tenant, ["break_glass", name], data.ig.config.defaults.break_glass[name])

# "*" in a scope field opens every value of it.
covers(pattern, _) if pattern == "*"

covers(pattern, value) if pattern == value

in_scope if {
	covers(grant.scope.resource_type, input.resource.type)
	covers(grant.scope.resource_id, input.resource.id)
	covers(grant.scope.action, input.action)
	covers(grant.scope.classification, input.resource.classification)
}

deny contains reason if {
	requested
	not verified
	reason := {"rule_id": "ig.breakglass.invalid", "message": object.get(input.context.break_glass, "rejection", self_asserted)}
}

deny contains reason if {
	verified
	not setting("enabled")
	reason := {"rule_id": "ig.breakglass.invalid", "message": "Break-glass is not enabled for this tenant."}
}

deny contains reason if {
	verified
	not holds_allowed_role
	reason := {"rule_id": "ig.breakglass.invalid", "message": "The actor holds no role that may use break-glass."}
}

deny contains reason if {
	verified
	grant.tenant != input.resource.tenant
	reason := {"rule_id": "ig.breakglass.invalid", "message": sprintf("The break-glass grant is for tenant '%s', not the resource's tenant '%s'.", [grant.tenant, input.resource.tenant])}
}

deny contains reason if {
	verified
	not in_scope
	reason := {
		"rule_id": "ig.breakglass.invalid",
		"message": sprintf(
			"The break-glass grant's scope (%s '%s', %s, %s) does not cover this request.",
			[grant.scope.resource_type, grant.scope.resource_id, grant.scope.action, grant.scope.classification],
		),
	}
}

deny contains reason if {
	verified
	min_justification := setting("min_justification")
	count(trim_space(grant.justification)) < min_justification
	reason := {
		"rule_id": "ig.breakglass.invalid",
		"message": sprintf(
			"A break-glass justification of at least '%v' characters is required.",
			[min_justification],
		),
	}
}

deny contains reason if {
	verified
	expires_ns <= lib.request_ns
	reason := {
		"rule_id": "ig.breakglass.invalid",
		"message": sprintf("The break-glass grant expired at '%s'.", [grant.expires_at]),
	}
}

deny contains reason if {
	verified
	max_minutes := setting("max_minutes")
	expires_ns - lib.request_ns > max_minutes * 60000000000
	reason := {
		"rule_id": "ig.breakglass.invalid",
		"message": sprintf("A break-glass grant may last at most '%v' minutes.", [max_minutes]),
	}
}

step_up contains reason if {
	verified
	not lib.has_mfa
	reason := {
		"rule_id": "ig.breakglass.requires_mfa",
		"message": "Break-glass use requires multi-factor authentication.",
		"obligation": "step_up:mfa",
	}
}

# Acceptable: nothing is wrong with the grant itself, though a step-up may still be owed.
acceptable if {
	verified
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
			"Break-glass access approved by '%s' until '%s' with justification '%s'; this use is audited.",
			[grant.approver, grant.expires_at, grant.justification],
		),
	}
}
