# Tenant isolation: both tenants must be configured and must be the same tenant.
package ig.tenant

deny contains reason if {
	some name in {input.actor.tenant, input.resource.tenant}
	is_string(name)
	not data.ig.config.tenants[name]
	reason := {
		"rule_id": "ig.tenant.unknown",
		"message": sprintf("Tenant '%s' has no policy configuration, so nothing is allowed for it.", [name]),
	}
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
