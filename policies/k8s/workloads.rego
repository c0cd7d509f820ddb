# Rules every rendered workload of the suite must meet (restricted Pod Security Standard + house rules).
# Input: {"manifests": [<Kubernetes object>, ...]}; `deny` is a set of messages naming the object and container.
package ig.k8s

import rego.v1

workload_kinds := {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}

pod_specs contains [obj, spec] if {
	some obj in input.manifests
	obj.kind in workload_kinds
	spec := obj.spec.template.spec
}

pod_specs contains [obj, spec] if {
	some obj in input.manifests
	obj.kind == "CronJob"
	spec := obj.spec.jobTemplate.spec.template.spec
}

pod_specs contains [obj, obj.spec] if {
	some obj in input.manifests
	obj.kind == "Pod"
}

containers contains [obj, spec, container] if {
	some [obj, spec] in pod_specs
	some container in array.concat(object.get(spec, "initContainers", []), object.get(spec, "containers", []))
}

name(obj) := sprintf("%s/%s", [obj.kind, obj.metadata.name])

# An explicit container setting wins over the pod's, as in the kubelet.
effective(_, container, field) := container.securityContext[field]

effective(spec, container, field) := spec.securityContext[field] if {
	not has_key(object.get(container, "securityContext", {}), field)
}

has_key(obj, key) if _ = obj[key]

# Helpers, because `not f(x) == v` parses as `(not f(x)) == v`.
runs_as_non_root(spec, container) if effective(spec, container, "runAsNonRoot") == true

drops_all(container) if "ALL" in container.securityContext.capabilities.drop

seccomp_confined(spec, container) if effective(spec, container, "seccompProfile").type in {"RuntimeDefault", "Localhost"}

deny contains msg if {
	some [obj, spec, container] in containers
	not runs_as_non_root(spec, container)
	msg := sprintf("%s container %s: runAsNonRoot must be true", [name(obj), container.name])
}

deny contains msg if {
	some [obj, spec, container] in containers
	effective(spec, container, "runAsUser") == 0
	msg := sprintf("%s container %s: runAsUser 0 (root) is not allowed", [name(obj), container.name])
}

deny contains msg if {
	some [obj, _, container] in containers
	not image_pinned(container.image)
	msg := sprintf(
		"%s container %s: image %q must carry a version tag or digest, never latest or none",
		[name(obj), container.name, container.image],
	)
}

image_pinned(image) if contains(image, "@sha256:")

image_pinned(image) if {
	not contains(image, "@")
	tag := image_tag(image)
	tag != ""
	tag != "latest"
}

# The tag follows the last ":" after the last "/" (a registry host may carry a port).
image_tag(image) := tag if {
	parts := split(image, "/")
	last := parts[count(parts) - 1]
	segments := split(last, ":")
	count(segments) == 2
	tag := segments[1]
}

image_tag(image) := "" if {
	parts := split(image, "/")
	not contains(parts[count(parts) - 1], ":")
}

deny contains msg if {
	some [obj, _, container] in containers
	some resource in ["cpu", "memory"]
	not container.resources.limits[resource]
	msg := sprintf("%s container %s: resources.limits.%s must be set", [name(obj), container.name, resource])
}

deny contains msg if {
	some [obj, _, container] in containers
	some resource in ["cpu", "memory"]
	not container.resources.requests[resource]
	msg := sprintf("%s container %s: resources.requests.%s must be set", [name(obj), container.name, resource])
}

# A chart's `helm test` hook: a pod that runs once to completion (restartPolicy Never), started by `helm test`.
run_once(obj) if {
	obj.kind == "Pod"
	obj.metadata.annotations["helm.sh/hook"] == "test"
	obj.spec.restartPolicy == "Never"
}

# Probes apply to long-running containers, not init containers nor a test hook that runs once.
deny contains msg if {
	some [obj, spec] in pod_specs
	not run_once(obj)
	some container in spec.containers
	some probe in ["livenessProbe", "readinessProbe"]
	not container[probe]
	msg := sprintf("%s container %s: %s must be set", [name(obj), container.name, probe])
}

deny contains msg if {
	some [obj, _, container] in containers
	not container.securityContext.allowPrivilegeEscalation == false
	msg := sprintf(
		"%s container %s: securityContext.allowPrivilegeEscalation must be false",
		[name(obj), container.name],
	)
}

deny contains msg if {
	some [obj, _, container] in containers
	container.securityContext.privileged == true
	msg := sprintf("%s container %s: privileged containers are not allowed", [name(obj), container.name])
}

deny contains msg if {
	some [obj, _, container] in containers
	not drops_all(container)
	msg := sprintf("%s container %s: capabilities must drop ALL", [name(obj), container.name])
}

deny contains msg if {
	some [obj, _, container] in containers
	some added in object.get(object.get(container.securityContext, "capabilities", {}), "add", [])
	added != "NET_BIND_SERVICE"
	msg := sprintf("%s container %s: capability %s may not be added", [name(obj), container.name, added])
}

deny contains msg if {
	some [obj, spec, container] in containers
	not seccomp_confined(spec, container)
	msg := sprintf(
		"%s container %s: seccompProfile must be RuntimeDefault or Localhost",
		[name(obj), container.name],
	)
}

deny contains msg if {
	some [obj, spec] in pod_specs
	some field in ["hostNetwork", "hostPID", "hostIPC"]
	spec[field] == true
	msg := sprintf("%s: %s is not allowed", [name(obj), field])
}

deny contains msg if {
	some [obj, spec] in pod_specs
	some volume in object.get(spec, "volumes", [])
	volume.hostPath
	msg := sprintf("%s: hostPath volume %s is not allowed", [name(obj), volume.name])
}
