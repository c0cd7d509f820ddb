# Data residency: a tenant pinned to a region is only served from that region.
# input.context.region is the region the deciding service serves from: the policy service writes its own IG_REGION
# there, whatever region the caller sent, so a client cannot reach pinned data by claiming to be in its region.
package ig.residency

import data.ig.lib

deny contains reason if {
	pinned := object.get(
		lib.tenant, ["residency", "pinned_region"],
		object.get(data.ig.config.defaults, ["residency", "pinned_region"], null),
	)
	pinned != null
	input.context.region != pinned
	reason := {
		"rule_id": "ig.residency.cross_region",
		"message": sprintf(
			"Tenant data is pinned to region '%s' and may not be accessed from region '%s'.",
			[pinned, input.context.region],
		),
	}
}
