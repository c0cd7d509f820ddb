# Network zones: unknown zones never pass; tenants list the zones they accept, overall and per action.
package ig.network

import data.ig.lib

deny contains reason if {
	input.context.network_zone == "unknown"
	reason := {
		"rule_id": "ig.network.unknown_zone",
		"message": "Requests from an unknown network zone are not allowed.",
	}
}

deny contains reason if {
	input.context.network_zone != "unknown"
	not input.context.network_zone in object.get(
		lib.tenant, ["network", "allowed_zones"],
		data.ig.config.defaults.network.allowed_zones,
	)
	reason := {
		"rule_id": "ig.network.zone_not_allowed",
		"message": sprintf("Network zone '%s' is not allowed by the tenant.", [input.context.network_zone]),
	}
}

deny contains reason if {
	allowed_for_action := object.get(
		lib.tenant, ["network", "zones_by_action", input.action],
		object.get(data.ig.config.defaults, ["network", "zones_by_action", input.action], null),
	)
	allowed_for_action != null
	not input.context.network_zone in allowed_for_action
	input.context.network_zone in object.get(
		lib.tenant, ["network", "allowed_zones"],
		data.ig.config.defaults.network.allowed_zones,
	)
	reason := {
		"rule_id": "ig.network.zone_not_allowed_for_action",
		"message": sprintf(
			"Action '%s' is not allowed from network zone '%s' for this tenant.",
			[input.action, input.context.network_zone],
		),
	}
}
