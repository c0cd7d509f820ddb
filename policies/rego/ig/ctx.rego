# The decision the service asks for (data.ig.ctx.decision): every deciding rule contributes a reason
# {rule_id, message}; the result follows DENY > STEP_UP > ALLOW > default DENY, and the primary reason is the
# one with the lowest priority number (data.ig.config.rule_priority), ties broken by rule id.
package ig.ctx

import data.ig

config := data.ig.config

checked_denials := (((((((ig.tenant.deny | ig.purpose.deny) | ig.rbac.deny) | ig.window.deny) | ig.network.deny) | ig.device.deny) | ig.risk.deny) | ig.auth.deny) | (ig.residency.deny | ig.breakglass.deny)

# Malformed input is answered by the validation reasons alone: the other rules are not evaluated on it.
raw_denials := checked_denials if ig.validate.valid

else := ig.validate.deny

# An acceptable grant lifts the overridable denials even while its MFA step-up is owed, so the caller is
# told to step up rather than denied for the very reason the grant exists.
overridden := {reason |
	ig.breakglass.acceptable
	some reason in raw_denials
	reason.rule_id in config.break_glass_overridable
}

denials := raw_denials - overridden

step_ups := ((ig.device.step_up | ig.risk.step_up) | ig.auth.step_up) | ig.breakglass.step_up if ig.validate.valid

else := set()

allowances := ig.breakglass.allow if count(overridden) > 0

else := ig.purpose.allow

default_denial := {
	"rule_id": "ig.default.deny",
	"message": "No rule allowed this request, so it is denied by default.",
}

result := "DENY" if count(denials) > 0

else := "STEP_UP" if count(step_ups) > 0

else := "ALLOW" if {
	ig.validate.valid
	count(allowances) > 0
}

else := "DENY"

deciding := denials if count(denials) > 0

else := step_ups if count(step_ups) > 0

else := allowances if result == "ALLOW"

else := {default_denial}

priority(rule_id) := object.get(config.rule_priority, rule_id, 500)

ranked(set_of_reasons) := [{"rule_id": entry[1], "message": entry[2]} |
	some entry in sort([[priority(r.rule_id), r.rule_id, r.message] | some r in set_of_reasons])
]

# An allowance that lifted denials lists them after itself, so the log shows what the grant bypassed.
reasons := array.concat(ranked(deciding), ranked(overridden)) if result == "ALLOW"

else := ranked(deciding)

obligations contains reason.obligation if {
	result == "STEP_UP"
	some reason in step_ups
}

obligations contains "audit:break_glass" if {
	result == "ALLOW"
	ig.breakglass.valid
}

decision := {
	"result": result,
	"rule_id": reasons[0].rule_id,
	"explanation": reasons[0].message,
	"reasons": reasons,
	"obligations": sort(obligations),
}

# Many decisions in one call, in order: the service coalesces concurrent requests into one round trip.
decisions := [d | some request in input.requests; d := decision with input as request]
