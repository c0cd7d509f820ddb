package ig.ctx_test

import data.ig.ctx
import data.ig.fixtures

test_allow_has_one_reason_and_no_obligations if {
	d := ctx.decision with input as fixtures.alpha
	d.result == "ALLOW"
	d.rule_id == "ig.purpose.allow_read"
	d.obligations == []
	count(d.reasons) == 1
}

test_every_denial_is_returned_and_primary_is_by_priority if {
	d := ctx.decision with input as object.union(fixtures.alpha, {"actor": {"tenant": "beta", "roles": []}})
	d.result == "DENY"
	d.rule_id == "ig.tenant.mismatch"
	fixtures.rule_ids(d.reasons) == {"ig.tenant.mismatch", "ig.rbac.action_not_granted"}
	d.reasons[0].rule_id == d.rule_id
	d.explanation == d.reasons[0].message
}

test_unprioritised_rule_sorts_after_known_ones if {
	ctx.priority("ig.some.new_rule") == 500
	ctx.priority("ig.input.invalid") == 10
}

test_step_up_collects_obligations if {
	d := ctx.decision with input as fixtures.with_context(fixtures.alpha, {"session_risk": 50})
	d.result == "STEP_UP"
	d.obligations == ["step_up:mfa"]
}

test_malformed_input_reports_only_validation if {
	d := ctx.decision with input as object.union(fixtures.alpha, {"actor": {"tenant": "beta"}, "action": "fly"})
	d.result == "DENY"
	fixtures.rule_ids(d.reasons) == {"ig.input.invalid"}
	count(ctx.step_ups) == 0 with input as object.union(fixtures.alpha, {"action": "fly"})
}

test_non_object_input_is_denied if {
	d := ctx.decision with input as "allow me"
	d.result == "DENY"
	d.rule_id == "ig.input.invalid"
}

test_nothing_allowing_falls_back_to_default_deny if {
	d := ctx.decision with input as fixtures.alpha with data.ig.purpose.allow as set()
	d.result == "DENY"
	d.rule_id == "ig.default.deny"
}

test_break_glass_allow_lists_what_it_lifted if {
	d := ctx.decision with input as fixtures.saturday_break_glass
	d.result == "ALLOW"
	d.rule_id == "ig.breakglass.allow"
	[r.rule_id | some r in d.reasons] == ["ig.breakglass.allow", "ig.time.outside_window"]
	d.obligations == ["audit:break_glass"]
}

test_break_glass_never_lifts_residency if {
	d := ctx.decision with input as fixtures.with_context(fixtures.saturday_break_glass, {"region": "region-b"})
	d.result == "DENY"
	d.rule_id == "ig.residency.cross_region"
}

test_decisions_answer_each_request_in_order if {
	answers := ctx.decisions with input as {"requests": [fixtures.alpha, "bad", fixtures.with_context(fixtures.alpha, {"session_risk": 50})]}
	[a.result | some a in answers] == ["ALLOW", "DENY", "STEP_UP"]
	answers[1].rule_id == "ig.input.invalid"
}
