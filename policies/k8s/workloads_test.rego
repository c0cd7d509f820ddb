package ig.k8s_test

import rego.v1

import data.ig.k8s as k

good_container := {
	"name": "app",
	"image": "ig/policy:1.2.1",
	"resources": {"limits": {"cpu": "1", "memory": "512Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}},
	"livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}},
	"readinessProbe": {"grpc": {"port": 50051}},
	"securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
}

deployment(container, pod_security) := {
	"kind": "Deployment",
	"metadata": {"name": "policy"},
	"spec": {"template": {"spec": {"securityContext": pod_security, "containers": [container]}}},
}

restricted_pod := {"runAsNonRoot": true, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}}

deny_for(container, pod_security) := msgs if {
	msgs := k.deny with input as {"manifests": [deployment(container, pod_security)]}
}

test_compliant_deployment_passes if {
	count(deny_for(good_container, restricted_pod)) == 0
}

test_each_violation_is_named if {
	cases := [
		[json.patch(good_container, [{"op": "replace", "path": "/image", "value": "ig/policy:latest"}]), "latest"],
		[json.patch(good_container, [{"op": "replace", "path": "/image", "value": "ig/policy"}]), "version tag"],
		[json.patch(good_container, [{"op": "remove", "path": "/resources/limits/memory"}]), "limits.memory"],
		[json.patch(good_container, [{"op": "remove", "path": "/resources/requests/cpu"}]), "requests.cpu"],
		[json.patch(good_container, [{"op": "remove", "path": "/livenessProbe"}]), "livenessProbe"],
		[json.patch(good_container, [{"op": "remove", "path": "/readinessProbe"}]), "readinessProbe"],
		[
			json.patch(good_container, [{"op": "replace", "path": "/securityContext/allowPrivilegeEscalation", "value": true}]),
			"allowPrivilegeEscalation",
		],
		[
			json.patch(good_container, [{"op": "remove", "path": "/securityContext/allowPrivilegeEscalation"}]),
			"allowPrivilegeEscalation",
		],
		[json.patch(good_container, [{"op": "add", "path": "/securityContext/privileged", "value": true}]), "privileged"],
		[json.patch(good_container, [{"op": "replace", "path": "/securityContext/capabilities/drop", "value": []}]), "drop ALL"],
		[json.patch(good_container, [{"op": "add", "path": "/securityContext/runAsUser", "value": 0}]), "root"],
		[json.patch(good_container, [{"op": "add", "path": "/securityContext/runAsNonRoot", "value": false}]), "runAsNonRoot"],
	]
	every case in cases {
		[container, fragment] := case
		some msg in deny_for(container, restricted_pod)
		contains(msg, fragment)
	}
}

test_pod_level_settings_are_required_without_container_overrides if {
	msgs := deny_for(good_container, {})
	some a in msgs
	contains(a, "runAsNonRoot")
	some b in msgs
	contains(b, "seccompProfile")
}

test_digest_pinned_image_passes if {
	pinned := json.patch(good_container, [{"op": "replace", "path": "/image", "value": "ig/policy@sha256:abc"}])
	count(deny_for(pinned, restricted_pod)) == 0
}

test_registry_port_is_not_a_tag if {
	untagged := json.patch(good_container, [{"op": "replace", "path": "/image", "value": "reg.local:5000/ig/policy"}])
	some msg in deny_for(untagged, restricted_pod)
	contains(msg, "version tag")
}

test_host_namespaces_and_paths_are_denied if {
	pod := {
		"kind": "Pod",
		"metadata": {"name": "p"},
		"spec": {
			"hostNetwork": true, "securityContext": restricted_pod, "containers": [good_container],
			"volumes": [{"name": "root", "hostPath": {"path": "/"}}],
		},
	}
	msgs := k.deny with input as {"manifests": [pod]}
	some a in msgs
	contains(a, "hostNetwork")
	some b in msgs
	contains(b, "hostPath")
}

test_non_workloads_are_ignored if {
	count(k.deny) == 0 with input as {"manifests": [{"kind": "Service", "metadata": {"name": "s"}, "spec": {}}]}
}

hook_pod := {
	"kind": "Pod",
	"metadata": {"name": "burn-test", "annotations": {"helm.sh/hook": "test"}},
	"spec": {
		"restartPolicy": "Never", "securityContext": restricted_pod,
		"containers": [json.remove(good_container, ["livenessProbe", "readinessProbe"])],
	},
}

deny_for_pod(pod) := msgs if {
	msgs := k.deny with input as {"manifests": [pod]}
}

test_a_run_once_test_hook_needs_no_probes if {
	count(deny_for_pod(hook_pod)) == 0
}

test_a_pod_that_is_no_test_hook_still_needs_probes if {
	restarting := json.patch(hook_pod, [{"op": "replace", "path": "/spec/restartPolicy", "value": "Always"}])
	unannotated := json.patch(hook_pod, [{"op": "remove", "path": "/metadata/annotations"}])
	some restarting_msg in deny_for_pod(restarting)
	contains(restarting_msg, "livenessProbe")
	some unannotated_msg in deny_for_pod(unannotated)
	contains(unannotated_msg, "readinessProbe")
}
