# Time-of-day and day-of-week windows, evaluated in the resource tenant's own time zone.
package ig.window

import data.ig.lib

# One rule does the whole check: the local clock and weekday come straight from the tenant's zone (OPA caches loaded
# zones), and the windows are searched by a function so that `not` can say "no window is open". Bounds are compared
# as "HH:MM" text, which orders like the times themselves because the configuration writes them zero-padded
# (tests/config_test.rego holds it to that); parsing them into minutes cost ten builtin calls per window.
deny contains reason if {
	zone := object.get(lib.tenant, "timezone", data.ig.config.defaults.timezone)
	clock := time.clock([lib.request_ns, zone])
	day := time.weekday([lib.request_ns, zone])
	local_time := sprintf("%02d:%02d", [clock[0], clock[1]])
	not open_at(object.get(lib.tenant, "windows", data.ig.config.defaults.windows), day, local_time)
	reason := {
		"rule_id": "ig.time.outside_window",
		"message": sprintf(
			"Request time '%s %s' in the tenant's time zone is outside the tenant's access windows.",
			[day, local_time],
		),
	}
}

# Windows run from start (included) to end (excluded); "24:00" closes one at midnight.
open_at(windows, day, local_time) if {
	some window in windows
	day in window.days
	local_time >= window.start
	local_time < window.end
}
