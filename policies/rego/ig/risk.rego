# Session risk: below step_up_at passes, [step_up_at, deny_at) needs MFA, deny_at and above is denied.
package ig.risk

import data.ig.lib

deny contains reason if {
	deny_at := object.get(lib.tenant, ["risk", "deny_at"], data.ig.config.defaults.risk.deny_at)
	input.context.session_risk >= deny_at
	reason := {
		"rule_id": "ig.risk.too_high",
		"message": sprintf(
			"Session risk '%v' is at or above the tenant's deny threshold '%v'.",
			[input.context.session_risk, deny_at],
		),
	}
}

step_up contains reason if {
	step_up_at := object.get(lib.tenant, ["risk", "step_up_at"], data.ig.config.defaults.risk.step_up_at)
	input.context.session_risk >= step_up_at
	deny_at := object.get(lib.tenant, ["risk", "deny_at"], data.ig.config.defaults.risk.deny_at)
	input.context.session_risk < deny_at
	not lib.has_mfa
	reason := {
		"rule_id": "ig.risk.step_up",
		"message": sprintf(
			"Session risk '%v' is in the tenant's step-up band from '%v' to '%v'; a multi-factor step-up is needed.",
			[input.context.session_risk, step_up_at, deny_at],
		),
		"obligation": "step_up:mfa",
	}
}
