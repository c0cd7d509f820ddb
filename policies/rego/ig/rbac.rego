# Roles to actions, from data.ig.config.roles.
package ig.rbac

granted_actions contains action if {
	some role in input.actor.roles
	some action in data.ig.config.roles[role]
}

deny contains reason if {
	not input.action in granted_actions
	reason := {
		"rule_id": "ig.rbac.action_not_granted",
		"message": sprintf("None of the actor's roles grants the action '%s'.", [input.action]),
	}
}
