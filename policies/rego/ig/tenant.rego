# Tenant isolation: both tenants must be configured and must be the same tenant.
package ig.tenant

# One definition per side (an unknown tenant named on both sides yields one reason: the set holds it once).
deny contains unknown_tenant(input.actor.tenant) if {
	is_string(input.actor.tenant)
	not data.ig.config.tenants[input.actor.tenant]
}

deny contains unknown_tenant(input.resource.tenant) if {
	is_string(input.resource.tenant)
	not data.ig.config.tenants[input.resource.tenant]
}

deny contains reason if {
	input.actor.tenant != input.resource.tenant
	reason := {
		"rule_id": "ig.tenant.mismatch",
		"message": sprintf(
			"Actor tenant '%s' differs from resource tenant '%s'; cross-tenant access is never allowed.",
			[input.actor.tenant, input.resource.tenant],
		),
	}
}

unknown_tenant(name) := {
	"rule_id": "ig.tenant.unknown",
	"message": sprintf("Tenant '%s' has no policy configuration, so nothing is allowed for it.", [name]),
}
