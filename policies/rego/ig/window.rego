# Time-of-day and day-of-week windows, evaluated in the resource tenant's own time zone.
package ig.window

import data.ig.lib

# Loading a time zone is the costliest step of a decision, so it happens once: the zone's offset is derived
# from one local clock reading (real offsets lie within -12 h..+14 h) and the weekday is taken in UTC.
local_clock := time.clock([lib.request_ns, lib.tenant.timezone])

utc_clock := time.clock(lib.request_ns)

raw_offset := ((((local_clock[0] * 60) + local_clock[1]) - ((utc_clock[0] * 60) + utc_clock[1])) + 1440) % 1440

offset_minutes := raw_offset - 1440 if raw_offset > 840

else := raw_offset

local_day := time.weekday(lib.request_ns + ((offset_minutes * 60) * 1000000000))

local_minute := (local_clock[0] * 60) + local_clock[1]

minute_of(text) := (to_number(parts[0]) * 60) + to_number(parts[1]) if parts := split(text, ":")

within_window if {
	some window in lib.tenant.windows
	local_day in window.days
	local_minute >= minute_of(window.start)
	local_minute < minute_of(window.end)
}

deny contains reason if {
	_ = local_minute
	not within_window
	reason := {
		"rule_id": "ig.time.outside_window",
		"message": sprintf(
			"Request time '%s %02d:%02d' in the tenant's time zone is outside the tenant's access windows.",
			[local_day, local_clock[0], local_clock[1]],
		),
	}
}
