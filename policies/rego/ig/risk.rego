# Session risk: below step_up_at passes, [step_up_at, deny_at) needs MFA, deny_at and above is denied.
package ig.risk

import data.ig.lib

risk := input.context.session_risk

thresholds := lib.tenant.risk

deny contains reason if {
	risk >= thresholds.deny_at
	reason := {
		"rule_id": "ig.risk.too_high",
		"message": sprintf(
			"Session risk '%v' is at or above the tenant's deny threshold '%v'.",
			[risk, thresholds.deny_at],
		),
	}
}

step_up contains reason if {
	risk >= thresholds.step_up_at
	risk < thresholds.deny_at
	not lib.has_mfa
	reason := {
		"rule_id": "ig.risk.step_up",
		"message": sprintf(
			"Session risk '%v' is in the tenant's step-up band from '%v' to '%v'; a multi-factor step-up is needed.",
			[risk, thresholds.step_up_at, thresholds.deny_at],
		),
		"obligation": "step_up:mfa",
	}
}
