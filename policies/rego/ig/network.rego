# Network zones: unknown zones never pass; tenants list the zones they accept, overall and per action.
package ig.network

import data.ig.lib

zone := input.context.network_zone

deny contains reason if {
	zone == "unknown"
	reason := {
		"rule_id": "ig.network.unknown_zone",
		"message": "Requests from an unknown network zone are not allowed.",
	}
}

deny contains reason if {
	zone != "unknown"
	not zone in lib.tenant.network.allowed_zones
	reason := {
		"rule_id": "ig.network.zone_not_allowed",
		"message": sprintf("Network zone '%s' is not allowed by the tenant.", [zone]),
	}
}

deny contains reason if {
	zone in lib.tenant.network.allowed_zones
	allowed := lib.tenant.network.zones_by_action[input.action]
	not zone in allowed
	reason := {
		"rule_id": "ig.network.zone_not_allowed_for_action",
		"message": sprintf("Action '%s' is not allowed from network zone '%s' for this tenant.", [input.action, zone]),
	}
}
