# Authentication level: unauthenticated sessions are denied; admin actions and restricted data need MFA.
package ig.auth

import data.ig.lib

deny contains reason if {
	lib.auth_level == 0
	reason := {
		"rule_id": "ig.auth.unauthenticated",
		"message": sprintf("The session is not authenticated (auth level '%s').", [input.context.auth_level]),
	}
}

step_up contains reason if {
	input.action == "admin"
	lib.auth_level > 0
	minimum := object.get(lib.tenant, ["auth", "admin_min"], data.ig.config.defaults.auth.admin_min)
	lib.auth_level < data.ig.config.auth_levels[minimum]
	reason := {
		"rule_id": "ig.auth.admin_requires_mfa",
		"message": sprintf(
			"Admin actions require multi-factor authentication but the session has '%s'.",
			[input.context.auth_level],
		),
		"obligation": "step_up:mfa",
	}
}

step_up contains reason if {
	input.resource.classification == "restricted"
	lib.auth_level > 0
	minimum := object.get(lib.tenant, ["auth", "restricted_min"], data.ig.config.defaults.auth.restricted_min)
	lib.auth_level < data.ig.config.auth_levels[minimum]
	reason := {
		"rule_id": "ig.auth.restricted_requires_mfa",
		"message": sprintf(
			"Restricted data requires multi-factor authentication but the session has '%s'.",
			[input.context.auth_level],
		),
		"obligation": "step_up:mfa",
	}
}
