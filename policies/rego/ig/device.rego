# Device trust: one level below what the action or classification needs can be made up by MFA (step-up);
# further below, or an unknown device, is denied.
package ig.device

import data.ig.lib

# The strictest of the minimums the tenant (else the defaults) sets for the action and for the classification; 0 when
# none is set. Inline lookups, not helper rules: this runs on every decision.
required := max([
	object.get(
		data.ig.config.device_trust_levels,
		object.get(
			lib.tenant, ["device", "min_trust_by_action", input.action],
			object.get(data.ig.config.defaults, ["device", "min_trust_by_action", input.action], null),
		),
		0,
	),
	object.get(
		data.ig.config.device_trust_levels,
		object.get(
			lib.tenant, ["device", "min_trust_by_classification", input.resource.classification],
			object.get(
				data.ig.config.defaults, ["device", "min_trust_by_classification", input.resource.classification],
				null,
			),
		),
		0,
	),
	0,
])

required_name := [name | some name, level in data.ig.config.device_trust_levels; level == required][0]

deny contains reason if {
	lib.device_level < required
	some too_low in {lib.device_level == 0, lib.device_level < (required - 1)}
	too_low
	reason := {
		"rule_id": "ig.device.untrusted",
		"message": sprintf(
			"Device trust '%s' is below the required '%s' and cannot be made up by a step-up.",
			[input.context.device_trust, required_name],
		),
	}
}

step_up contains reason if {
	lib.device_level > 0
	lib.device_level == required - 1
	not lib.has_mfa
	reason := {
		"rule_id": "ig.device.step_up_low_trust",
		"message": sprintf(
			"Device trust '%s' is below the required '%s'; a multi-factor step-up is needed.",
			[input.context.device_trust, required_name],
		),
		"obligation": "step_up:mfa",
	}
}
