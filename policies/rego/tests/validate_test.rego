# The validation shortcut (first definition of ig.validate.valid) must agree with the field-by-field check
# (`count(invalid) == 0`) on every input: those close to each shortcut check's edge, on both sides.
package ig.validate_test

import data.ig
import data.ig.fixtures

alpha := fixtures.alpha

repeated(text, n) := [text | some _ in numbers.range(1, n)]

long_text(n) := concat("", repeated("x", n))

agreeing_inputs := {
	"well-formed": alpha,
	"grant": fixtures.saturday_break_glass,
	"null grant": fixtures.with_context(alpha, {"break_glass": null}),
	"grant not an object": fixtures.with_context(alpha, {"break_glass": "please"}),
	"self-asserted grant": fixtures.with_context(alpha, {"break_glass": {"justification": "outage", "expires_at": "2026-01-10T12:30:00Z"}}),
	"empty grant": fixtures.with_context(alpha, {"break_glass": {}}),
	"rejection": fixtures.with_context(alpha, {"break_glass": {"rejection": "The break-glass grant expired."}}),
	"rejection not a string": fixtures.with_context(alpha, {"break_glass": {"rejection": 7}}),
	"rejection too long": fixtures.with_context(alpha, {"break_glass": {"rejection": long_text(1025)}}),
	"verified facts without expiry": fixtures.with_context(alpha, {"break_glass": {"verified": object.remove(fixtures.grant.verified, ["expires_at"])}}),
	"verified facts with a bad time": fixtures.with_grant({"issued_at": "yesterday"}),
	"verified facts without a scope field": fixtures.with_grant({"scope": {"resource_type": "case", "resource_id": "*", "action": "read"}}),
	"verified facts with an empty approver": fixtures.with_grant({"approver": ""}),
	"verified facts not an object": fixtures.with_context(alpha, {"break_glass": {"verified": "yes"}}),
	"verified justification too long": fixtures.with_grant({"justification": long_text(1025)}),
	"verified justification at the bound": fixtures.with_grant({"justification": long_text(1024)}),
	"strings long in total, each within bounds": object.union(alpha, {"actor": {"id": long_text(200)}, "resource": {"id": long_text(200)}}),
	"string one past the bound": object.union(alpha, {"actor": {"id": long_text(257)}}),
	"string at the bound": object.union(alpha, {"actor": {"id": long_text(256)}}),
	"optional strings empty": object.union(alpha, {"resource": {"purpose": "", "region": ""}}),
	"optional strings missing": {"actor": alpha.actor, "action": "read", "context": alpha.context, "resource": object.remove(alpha.resource, ["purpose", "region"])},
	"optional string not a string": object.union(alpha, {"resource": {"region": 7}}),
	"required string empty": object.union(alpha, {"resource": {"type": ""}}),
	"required string missing": {"actor": object.remove(alpha.actor, ["tenant"]), "action": "read", "context": alpha.context, "resource": alpha.resource},
	"actor not an object": object.union(alpha, {"actor": ["u-alice"]}),
	"lists missing": {"actor": object.remove(alpha.actor, ["roles", "purposes"]), "action": "read", "context": alpha.context, "resource": alpha.resource},
	"64 roles": object.union(alpha, {"actor": {"roles": repeated("r", 64)}}),
	"65 roles": object.union(alpha, {"actor": {"roles": repeated("r", 65)}}),
	"65 purposes": object.union(alpha, {"actor": {"purposes": repeated("p", 65)}}),
	"role empty": object.union(alpha, {"actor": {"roles": ["analyst", ""]}}),
	"role not a string": object.union(alpha, {"actor": {"purposes": ["investigation", 3]}}),
	"roles a string": object.union(alpha, {"actor": {"roles": "analyst"}}),
	"risk 0": fixtures.with_context(alpha, {"session_risk": 0}),
	"risk 100": fixtures.with_context(alpha, {"session_risk": 100}),
	"risk 40.0": fixtures.with_context(alpha, {"session_risk": 40.0}),
	"risk 39.5": fixtures.with_context(alpha, {"session_risk": 39.5}),
	"risk 101": fixtures.with_context(alpha, {"session_risk": 101}),
	"risk -1": fixtures.with_context(alpha, {"session_risk": -1}),
	"risk text": fixtures.with_context(alpha, {"session_risk": "10"}),
	"risk true": fixtures.with_context(alpha, {"session_risk": true}),
	"risk null": fixtures.with_context(alpha, {"session_risk": null}),
	"time with offset": fixtures.with_context(alpha, {"time": "2026-01-05T12:00:00+02:00"}),
	"time not RFC 3339": fixtures.with_context(alpha, {"time": "2026-01-05 10:00:00Z"}),
	"time too long": fixtures.with_context(alpha, {"time": concat("", ["2026-01-05T10:00:00.", concat("", repeated("0", 50)), "Z"])}),
	"time at the bound": fixtures.with_context(alpha, {"time": concat("", ["2026-01-05T10:00:00.", concat("", repeated("0", 43)), "Z"])}),
	"time a number": fixtures.with_context(alpha, {"time": 1767607200}),
	"unknown device trust": fixtures.with_context(alpha, {"device_trust": "shiny"}),
	"unknown zone": fixtures.with_context(alpha, {"network_zone": "mars"}),
	"unknown classification": object.union(alpha, {"resource": {"classification": "secret"}}),
	"unknown action": object.union(alpha, {"action": "fly"}),
	"not an object": "allow me",
}

test_valid_agrees_with_invalid if {
	every _, document in agreeing_inputs {
		agree(document)
	}
}

agree(document) if {
	ig.validate.valid with input as document
	count(ig.validate.invalid) == 0 with input as document
}

agree(document) if {
	not ig.validate.valid with input as document
	count(ig.validate.invalid) > 0 with input as document
}

# The table holds both kinds, so agreement is not vacuous.
test_table_holds_valid_and_invalid_inputs if {
	count({name | some name, document in agreeing_inputs; ig.validate.valid with input as document}) >= 10
	count({name | some name, document in agreeing_inputs; not ig.validate.valid with input as document}) >= 15
}
