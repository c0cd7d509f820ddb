# Invariants of the gRPC authorization table (grpc-methods.yaml, loaded as data): what a reviewer of a change to
# the table must never have to catch by eye. Run by `opa test policies/authz/grpc-methods.yaml policies/authz`
# (tools/infra/tests/test_authz_tables.py, inside make test).
package ig.authz.grpc_methods_test

services := {"policy", "evidence", "burn", "migration", "audit-portal"}

granted(method) := {name | some name in data.methods[method]}

callers_of(prefix) := {name |
	some method, names in data.methods
	startswith(method, prefix)
	some name in names
}

test_only_health_and_reflection_are_open_to_every_identity if {
	open := {method | some method, names in data.methods; "*" in names}
	every method in open {
		regex.match(`^/grpc\.(health\.v1\.Health|reflection\.v1alpha\.ServerReflection)/`, method)
	}
}

known(name) if name == "*"

known(name) if name in data.identities

test_every_grant_names_a_known_identity if {
	every _, names in data.methods {
		every name in names {
			known(name)
		}
	}
}

test_flag_administration_is_the_operators_alone if {
	granted("/ig.flags.v1.FlagService/SetFlag") == {"operator"}
}

test_services_call_each_other_only_along_the_suite_edges if {
	# The portal reads evidence and the ledger, the migration orchestrator asks burn for headroom; nothing else.
	edges := {[name, method] |
		some method, names in data.methods
		not startswith(method, "/grpc.")
		some name in names
		name in services
	}
	every edge in edges {
		allowed_edge(edge[0], edge[1])
	}
}

allowed_edge("audit-portal", method) if startswith(method, "/ig.evidence.v1.EvidenceService/")

allowed_edge("audit-portal", method) if startswith(method, "/ig.ledger.v1.LedgerService/")

allowed_edge("migration", "/ig.burn.v1.BurnService/GetBurn")

test_the_approver_calls_nothing if {
	# health answers any known identity, harmlessly; nothing else may name the approver
	every method, names in data.methods {
		not approver_granted(method, names)
	}
}

approver_granted(method, names) if {
	not startswith(method, "/grpc.")
	"approver" in names
}

test_nothing_but_the_release_job_and_the_benchmarks_registers_evidence if {
	granted("/ig.evidence.v1.EvidenceService/RegisterBundle") == {"release", "bench"}
}

test_migrations_are_run_by_operators_and_the_release_job_only if {
	# the helm test hook may read a change's status (it asks for one that does not exist), nothing else
	every method in {m | some m, _ in data.methods; startswith(m, "/ig.migration.v1.")} {
		granted(method) - {"helm-test"} <= {"operator", "release"}
	}
	{m | some m, names in data.methods; startswith(m, "/ig.migration.v1."); "helm-test" in names} == {
		"/ig.migration.v1.MigrationService/Status",
	}
}

test_the_helm_test_hook_only_reads_and_only_its_own_empty_tenant if {
	hook := {m | some m, names in data.methods; not startswith(m, "/grpc."); "helm-test" in names}
	hook == {
		"/ig.policy.v1.PolicyService/Decide",
		"/ig.evidence.v1.EvidenceService/ListReleases",
		"/ig.migration.v1.MigrationService/Status",
	}
	{t | some t in data.tenants["helm-test"]} == {"helm-test"}
	every _, names in data.http {
		not "helm-test" in names
	}
	every _, names in data.ledger_kinds {
		not "helm-test" in names
	}
}

test_only_the_portal_forwards_end_users if {
	{name | some name in data.user_forwarders} == {"audit-portal"}
}

test_audit_entries_come_from_the_portal_alone if {
	{name | some name in data.ledger_kinds["ig.audit.*"]} == {"audit-portal"}
	portal_kinds := {kind | some kind, names in data.ledger_kinds; "audit-portal" in names}
	portal_kinds == {"ig.audit.*"}
}

test_evidence_entries_come_from_the_release_job_or_the_evidence_service if {
	every kind, names in data.ledger_kinds {
		evidence_kind_owned_properly(kind, names)
	}
}

evidence_kind_owned_properly(kind, _) if not startswith(kind, "evidence.")

evidence_kind_owned_properly(kind, names) if {
	startswith(kind, "evidence.")
	{name | some name in names} <= {"release", "evidence"}
}

test_no_workload_acts_for_every_tenant if {
	every _, tenants in data.tenants {
		not "*" in tenants
		not "" in tenants
	}
}

test_ledger_readers_read_named_tenants_only_and_the_portal_acts_for_none if {
	# Reading a tenant's ledger entries alone (the portal's access-log feed) is all the portal may do without a user:
	# it is granted no tenant to act for, and no reader is granted every tenant.
	every _, tenants in data.ledger_readers {
		not "*" in tenants
		not "" in tenants
	}
	not data.tenants["audit-portal"]
}

test_http_rows_name_known_identities_and_never_everyone if {
	every _, names in data.http {
		every name in names {
			name in data.identities
		}
	}
}

test_authzen_answers_exactly_whom_decide_answers if {
	# AuthZEN is another door to the same decisions: it must not open them to anyone Decide refuses.
	# (The helm test hook asks Decide only, to prove the release answers; it is no client of decisions.)
	{name | some name in data.http["POST /access/v1/evaluation"]} == granted("/ig.policy.v1.PolicyService/Decide") - {"helm-test"}
	{name | some name in data.http["POST /access/v1/evaluations"]} == granted("/ig.policy.v1.PolicyService/BatchDecide")
}

test_gateway_checks_answer_no_one_decide_refuses if {
	# ext_authz Check and forward-auth are more doors to the same decisions.
	granted("/envoy.service.auth.v3.Authorization/Check") <= granted("/ig.policy.v1.PolicyService/Decide")
	{name | some name in data.http["GET /forward-auth"]} <= granted("/ig.policy.v1.PolicyService/Decide")
}

test_burn_report_over_https_answers_exactly_whom_get_burn_answers if {
	# /get-burn and BurnService/GetBurn hand out the same report: one must not be wider than the other.
	{name | some name in data.http["GET /get-burn"]} == granted("/ig.burn.v1.BurnService/GetBurn")
}

test_only_the_ledger_submits_checkpoints_to_witnesses if {
	# A witness cosigns whatever extends what it last cosigned: only the ledger's own service may feed it.
	{name | some name in data.http["POST /add-checkpoint"]} == {"evidence"}
}

test_witnesses_call_nothing if {
	every _, names in data.methods {
		not "witness" in names
	}
	every _, names in data.http {
		not "witness" in names
	}
}
