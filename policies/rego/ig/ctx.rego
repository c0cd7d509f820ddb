# The decision the service asks for (data.ig.ctx.decision): every deciding rule contributes a reason
# {rule_id, message}; the result follows DENY > STEP_UP > ALLOW > default DENY, and the primary reason is the
# one with the lowest priority number (data.ig.config.rule_priority), ties broken by rule id.
#
# Evaluation cost: each rule below is evaluated once per decision and each evaluation has a fixed price, so the
# chain is short: result and deciding reasons come from one rule (outcome), obligations from another, and a single
# reason skips the sort.
package ig.ctx

import data.ig

# Malformed input is answered by the validation reasons alone: the other rules are not evaluated on it.
raw_denials := (((((((ig.tenant.deny | ig.purpose.deny) | ig.rbac.deny) | ig.window.deny) | ig.network.deny) | ig.device.deny) | ig.risk.deny) | ig.auth.deny) | (ig.residency.deny | ig.breakglass.deny) if ig.validate.valid

else := ig.validate.deny

# An acceptable grant lifts the overridable denials even while its MFA step-up is owed, so the caller is
# told to step up rather than denied for the very reason the grant exists.
overridden := {reason |
	some reason in raw_denials
	reason.rule_id in data.ig.config.break_glass_overridable
} if ig.breakglass.acceptable

else := set()

denials := raw_denials - overridden

step_ups := ((ig.device.step_up | ig.risk.step_up) | ig.auth.step_up) | ig.breakglass.step_up if ig.validate.valid

else := set()

allowances := ig.breakglass.allow if count(overridden) > 0

else := ig.purpose.allow

default_denial := {
	"rule_id": "ig.default.deny",
	"message": "No rule allowed this request, so it is denied by default.",
}

# [result, the reasons that decided it]
outcome := ["DENY", denials] if count(denials) > 0

else := ["STEP_UP", step_ups] if count(step_ups) > 0

else := ["ALLOW", allowances] if {
	ig.validate.valid
	count(allowances) > 0
}

else := ["DENY", {default_denial}]

priority(rule_id) := object.get(data.ig.config.rule_priority, rule_id, 500)

# Reasons as {rule_id, message} in priority order (ties by rule id, then message).
ranked(set_of_reasons) := [] if count(set_of_reasons) == 0

else := [{"rule_id": reason.rule_id, "message": reason.message} |
	some reason in set_of_reasons
] if {
	count(set_of_reasons) == 1
}

else := [{"rule_id": entry[1], "message": entry[2]} |
	some entry in sort([[priority(r.rule_id), r.rule_id, r.message] | some r in set_of_reasons])
]

# An allowance that lifted denials lists them after itself, so the log shows what the grant bypassed.
reasons := array.concat(ranked(outcome[1]), ranked(overridden)) if outcome[0] == "ALLOW"

else := ranked(outcome[1])

obligations := sort({reason.obligation | some reason in step_ups}) if outcome[0] == "STEP_UP"

else := ["audit:break_glass"] if {
	outcome[0] == "ALLOW"
	ig.breakglass.valid
}

else := []

decision := {
	"result": outcome[0],
	"rule_id": reasons[0].rule_id,
	"explanation": reasons[0].message,
	"reasons": reasons,
	"obligations": obligations,
}

# Many decisions in one call, in order: the service coalesces concurrent requests into one round trip.
decisions := [d | some request in input.requests; d := decision with input as request]
