package system.authz_test

import data.system.authz

token := "a-test-token-of-the-policy-service-0123456789"

digest := {"sha256": crypto.sha256(token)}

as_service(method, path) := {"method": method, "path": path, "identity": token}

anonymous(method, path) := {"method": method, "path": path}

allowed(request) if authz.allow with input as request with data.system.opa_token as digest

test_health_is_open_to_anyone if {
	allowed(anonymous("GET", ["health"]))
	allowed(anonymous("GET", ["health", "ready"]))
}

test_the_service_asks_for_decisions if {
	allowed(as_service("POST", ["v1", "data", "ig", "ctx", "decision"]))
	allowed(as_service("POST", ["v1", "data", "ig", "ctx", "decisions"]))
}

test_the_service_reads_what_it_stamps_as_the_revision if {
	allowed(as_service("GET", ["v1", "policies"]))
	allowed(as_service("GET", ["v1", "policies", "policies", "rego", "ig", "ctx.rego"]))
	allowed(as_service("GET", ["v1", "data", "ig", "config"]))
}

test_without_the_token_nothing_but_health if {
	not allowed(anonymous("POST", ["v1", "data", "ig", "ctx", "decision"]))
	not allowed(anonymous("GET", ["v1", "policies"]))
	not allowed(anonymous("GET", ["v1", "data", "ig", "config"]))
	not allowed(anonymous("PUT", ["v1", "policies", "x"]))
}

test_a_wrong_token_is_no_token if {
	not allowed({"method": "POST", "path": ["v1", "data", "ig", "ctx", "decision"], "identity": "guess"})
	not allowed({"method": "POST", "path": ["v1", "data", "ig", "ctx", "decision"], "identity": digest.sha256})
}

test_nobody_writes_policies_or_data if {
	every method in ["PUT", "PATCH", "DELETE", "POST"] {
		every path in [["v1", "policies", "x"], ["v1", "data"], ["v1", "data", "system", "opa_token"]] {
			not allowed(as_service(method, path))
			not allowed(anonymous(method, path))
		}
	}
	every method in ["PUT", "PATCH", "DELETE"] {
		not allowed(as_service(method, ["v1", "data", "ig", "config"]))
		not allowed(anonymous(method, ["v1", "data", "ig", "config"]))
	}
}

test_the_token_reads_nothing_outside_ig if {
	not allowed(as_service("GET", ["v1", "data"]))
	not allowed(as_service("GET", ["v1", "data", "system", "opa_token"]))
	not allowed(as_service("POST", ["v1", "data", "ig"]))
	not allowed(as_service("POST", ["v1", "data", "system", "authz", "allow"]))
	not allowed(as_service("POST", ["v1", "query"]))
	not allowed(as_service("POST", ["v1", "compile"]))
	not allowed(as_service("GET", ["v1", "config"]))
	not allowed(as_service("GET", ["v1", "status"]))
	not allowed(as_service("POST", []))
	not allowed(as_service("GET", ["metrics"]))
}

test_without_a_loaded_digest_even_the_token_is_refused if {
	not authz.allow with input as as_service("POST", ["v1", "data", "ig", "ctx", "decision"])
}
