# Inputs shared by the policy unit tests: one well-formed request per tenant, patched per test.
package ig.fixtures

alpha := {
	"actor": {"id": "u-alice", "tenant": "alpha", "roles": ["analyst"], "purposes": ["investigation"]},
	"resource": {
		"type": "case", "id": "case-1", "tenant": "alpha", "purpose": "investigation",
		"region": "region-a", "classification": "internal",
	},
	"action": "read",
	"context": {
		"time": "2026-01-05T10:00:00Z", "network_zone": "corp", "device_trust": "high",
		"session_risk": 10, "auth_level": "pwd", "region": "region-a",
	},
}

gamma := object.union(alpha, {
	"actor": {"id": "u-gina", "tenant": "gamma"},
	"resource": {"tenant": "gamma", "region": "region-b"},
	"context": {"region": "region-b", "time": "2026-01-05T03:00:00Z"},
})

with_context(base, patch) := object.union(base, {"context": patch})

# What the policy service hands over once it verified a grant (ig_policy.breakglass).
grant := {"verified": {
	"approver": "golden-approver",
	"approver_key_id": "ae0eaba8420d5b2aa56b5b404b00aba7ad76b301b18d93ffa41f00640ec2c023",
	"tenant": "alpha",
	"scope": {"resource_type": "case", "resource_id": "case-1", "action": "read", "classification": "internal"},
	"justification": "P1 incident INC-4711 customer outage",
	"jti": "bg-test-1",
	"issued_at": "2026-01-10T11:55:00Z",
	"expires_at": "2026-01-10T12:30:00Z",
}}

# The saturday_break_glass request with its verified grant patched.
with_grant(patch) := with_context(saturday_break_glass, {"break_glass": {"verified": object.union(grant.verified, patch)}})

saturday_break_glass := with_break_glass(grant)

# The Saturday request of an on-call actor with MFA, carrying ``glass`` as context.break_glass.
with_break_glass(glass) := object.union(alpha, {
	"actor": {"roles": ["oncall"]},
	"context": {"time": "2026-01-10T12:00:00Z", "auth_level": "mfa", "break_glass": glass},
})

rule_ids(reasons) := {r.rule_id | some r in reasons}

messages(reasons) := {r.message | some r in reasons}
