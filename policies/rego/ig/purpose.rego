# Purpose binding: the actor must declare the purpose the resource was collected for.
package ig.purpose

# A rule of its own, not an inline `not ... in ...`: OPA leaves `not x in <undefined>` undefined, and an actor
# without a purposes list must be denied here.
purpose_declared if input.resource.purpose in input.actor.purposes

deny contains reason if {
	not purpose_declared
	reason := {
		"rule_id": "ig.purpose.mismatch",
		"message": sprintf("Resource purpose '%s' is not among the actor's declared purposes.", [input.resource.purpose]),
	}
}

# The allowance the brief names (ig.purpose.allow_read), one rule id per action.
allow contains reason if {
	input.actor.tenant == input.resource.tenant
	purpose_declared
	reason := {
		"rule_id": sprintf("ig.purpose.allow_%s", [input.action]),
		"message": sprintf(
			"Tenant and purpose match and every contextual check passed, so '%s' is allowed.",
			[input.action],
		),
	}
}
