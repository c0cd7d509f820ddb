# Time-of-day and day-of-week windows, evaluated in the resource tenant's own time zone.
package ig.window

import data.ig.lib

# One rule does the whole check: the local clock and weekday come straight from the tenant's zone (OPA caches
# loaded zones), and the windows are searched by a function so that `not` can say "no window is open".
deny contains reason if {
	zone := object.get(lib.tenant, "timezone", data.ig.config.defaults.timezone)
	clock := time.clock([lib.request_ns, zone])
	day := time.weekday([lib.request_ns, zone])
	not open_at(object.get(lib.tenant, "windows", data.ig.config.defaults.windows), day, (clock[0] * 60) + clock[1])
	reason := {
		"rule_id": "ig.time.outside_window",
		"message": sprintf(
			"Request time '%s %02d:%02d' in the tenant's time zone is outside the tenant's access windows.",
			[day, clock[0], clock[1]],
		),
	}
}

# Window bounds are "HH:MM" in the tenant's zone; "24:00" closes a window at midnight.
open_at(windows, day, minute) if {
	some window in windows
	day in window.days
	start := split(window.start, ":")
	minute >= (to_number(start[0]) * 60) + to_number(start[1])
	end := split(window.end, ":")
	minute < (to_number(end[0]) * 60) + to_number(end[1])
}
