# Roles to actions, from data.ig.config.roles.
package ig.rbac

# A yes/no question stops at the first role that grants the action, where collecting every granted action into a
# set cost a comprehension on each decision.
action_granted if {
	some role in input.actor.roles
	input.action in data.ig.config.roles[role]
}

deny contains reason if {
	not action_granted
	reason := {
		"rule_id": "ig.rbac.action_not_granted",
		"message": sprintf("None of the actor's roles grants the action '%s'.", [input.action]),
	}
}
