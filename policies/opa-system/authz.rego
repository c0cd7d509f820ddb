# OPA's own API guard (data.system.authz, evaluated by `opa run --authorization=basic` before every request).
#
# Only the Policy Reasoner may use the API, and only to read: it asks for decisions (POST /v1/data/ig/...) and reads
# what it stamps as the policy revision (GET /v1/policies, GET /v1/data/ig/...). Health is open to the probes.
# Everything else is denied to everyone, the Reasoner included: writing policies or data (PUT/PATCH/DELETE),
# ad-hoc queries (/v1/query, /v1/compile) that could read data.system, the config and status APIs. Policies reach OPA
# only from files at start-up (--watch locally) or from the bundle plugin, which do not pass through this API.
#
# The caller's bearer token (--authentication=token puts it in input.identity) is recognised by its SHA-256, which
# is all OPA holds (data.system.opa_token.sha256, loaded from a file next to the token). Rego has no constant-time
# comparison; comparing digests means the time an equality takes can only tell an attacker about a digest prefix,
# which gives no way to build the token itself.
package system.authz

default allow := false

allow if input.path[0] == "health"

allow if {
	policy_service
	input.method == "POST"
	under_ig_data
}

allow if {
	policy_service
	input.method == "GET"
	readable
}

policy_service if crypto.sha256(input.identity) == data.system.opa_token.sha256

# POST /v1/data/ig/<package>/<rule>: a decision; the bare /v1/data/ig (every document at once) is not one.
under_ig_data if {
	count(input.path) > 3
	array.slice(input.path, 0, 3) == ["v1", "data", "ig"]
}

readable if under_ig_data

readable if array.slice(input.path, 0, 2) == ["v1", "policies"]
