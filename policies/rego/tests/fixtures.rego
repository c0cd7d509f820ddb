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

grant := {"justification": "P1 incident INC-4711 customer outage", "expires_at": "2026-01-10T12:30:00Z"}

saturday_break_glass := object.union(alpha, {
	"actor": {"roles": ["oncall"]},
	"context": {"time": "2026-01-10T12:00:00Z", "auth_level": "mfa", "break_glass": grant},
})

rule_ids(reasons) := {r.rule_id | some r in reasons}

messages(reasons) := {r.message | some r in reasons}
