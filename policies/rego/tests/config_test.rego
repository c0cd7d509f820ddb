# The rules read tenant settings leaf by leaf (see ig/lib.rego) instead of merging each tenant with the defaults.
# These tests hold that shortcut to the meaning of the configuration, "defaults fill what a tenant leaves out".
package ig.config_test

import data.ig.config

# Settings read as object.get(tenant, path, <the default's value>): the default must exist.
settings_with_a_default := [
	["timezone"], ["windows"], ["network", "allowed_zones"], ["risk", "step_up_at"], ["risk", "deny_at"],
	["auth", "admin_min"], ["auth", "restricted_min"], ["break_glass", "enabled"], ["break_glass", "roles"],
	["break_glass", "max_minutes"], ["break_glass", "min_justification"],
]

test_defaults_define_every_setting_read_with_a_default if {
	every path in settings_with_a_default {
		object.get(config.defaults, path, null) != null
	}
}

# For every configured tenant and every setting, the leaf lookup equals what object.union(defaults, tenant) holds.
test_leaf_lookups_agree_with_the_merged_configuration if {
	every name, tenant in config.tenants {
		every path in settings_with_a_default {
			merged_value(name, path) == object.get(tenant, path, object.get(config.defaults, path, null))
		}
	}
}

merged_value(name, path) := object.get(object.union(config.defaults, config.tenants[name]), path, null)

# Sections the defaults hold as objects must be objects in each tenant too, or a leaf lookup and a merge differ.
test_tenant_sections_are_objects_like_the_defaults if {
	every _, tenant in config.tenants {
		every section, value in tenant {
			is_object(value) == is_object(object.get(config.defaults, section, value))
		}
	}
}

# Entries read as object.get(tenant, path, object.get(defaults, path, null)), null meaning "none": the same check.
entries contains ["residency", "pinned_region"]

entries contains ["network", "zones_by_action", action] if some action in config.actions

entries contains ["device", "min_trust_by_action", action] if some action in config.actions

entries contains ["device", "min_trust_by_classification", class] if some class in config.classifications

test_entry_lookups_agree_with_the_merged_configuration if {
	every name, tenant in config.tenants {
		every path in entries {
			merged_value(name, path) == object.get(tenant, path, object.get(config.defaults, path, null))
		}
	}
}

# The window rule compares "HH:MM" bounds as text, which orders like the times only when they are zero-padded.
test_window_bounds_are_zero_padded_times if {
	every windows in array.concat([config.defaults.windows], [object.get(t, "windows", []) | some t in config.tenants]) {
		every window in windows {
			regex.match(`^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$`, window.start)
			regex.match(`^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$`, window.end)
		}
	}
}
