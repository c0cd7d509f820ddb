# Kubernetes delivery (tools/k8s): Dockerfiles, Helm charts, skaffold/Tilt, simulated clusters. Tests: tools/k8s/tests.
CHECK_TARGETS += k8s-check k8s-binaries

.PHONY: k8s-check k8s-binaries k8s-up k8s-down k8s-status k8s-node-up k8s-node-down k8s-images k8s-node-test

# The real-node tests (tools/k8s/tests/real: the suite brought up as `make k8s-up` does, RealSuite.up: containerd +
# kubelet + kube-proxy + CoreDNS running all five releases from images built here, policy upgraded and rolled back,
# evidence blobs kept across the loss of every pod, helm tests, sign-in through each region's Dex) are part of
# `make test`: warm 544 s alone on 2026-12-07 07:00 (65 tests with the gRPC helm tests and the image-provenance test;
# 437 s for 63 tests earlier that day, 290-360 s for the 49 tests of 2026-12-06); cold 1,228 s in a fresh machine's `make test` on 2026-12-07 (789 s on 2026-12-06), where they
# first build containerd, the kubelet, CoreDNS, the Debian base and the images (the control plane is built before, by
# k8s-binaries). They never skip.
# `make k8s-node-test` runs them alone.

k8s-check: ## hadolint the Dockerfiles, opa test the manifest policy, fail on stale Dockerfiles/chart READMEs/values schemas
	$(RUN) hadolint services/*/Dockerfile
	"$$($(RUN) ig-infra tool opa)" test policies/k8s
	$(RUN) ig-k8s dockerfiles --check
	$(RUN) ig-k8s docs --check
	$(RUN) ig-k8s values-schema --check

k8s-up: bootstrap ## both regions with every service as real pods: clusters, a real node each, images built here (only when their inputs changed) and imported, each region's own PostgreSQL, Kafka and Prometheus, every release installed with --wait --atomic; prints each region's addresses, pods and images (size, digest). `ig-k8s up --simulated`: kwok nodes only
	$(RUN) ig-k8s up

k8s-node-up: ## a real node per region (containerd 2.x, runc, CNI bridge, kubelet 1.37) on the running clusters
	$(RUN) ig-k8s node up

k8s-node-down: ## stop the real nodes and everything they run (containers, shims, bridges, cgroups, mounts)
	$(RUN) ig-k8s node down

k8s-images: ## Debian python base (mmdebstrap) + burn image (buildah), imported into the running real nodes; JSON figures
	$(RUN) ig-k8s images --service burn

k8s-node-test: ## real nodes in both regions: pods Ready by their probes, Service DNS, burn, policy, evidence, migration and portal installed with --wait --atomic, helm tests, evidence blobs across pod loss, upgrade/rollback under load, RBAC switch
	$(RUN) pytest tools/k8s/tests/real -q -p no:randomly

k8s-down: ## stop the real nodes (containers, images, network namespaces), each region's PostgreSQL, Kafka and Prometheus for its pods, and the clusters, and forget the clusters' state
	$(RUN) ig-k8s down

k8s-status: ## where the simulated Kubernetes clusters listen, and their kubeconfigs
	$(RUN) ig-k8s status

k8s-binaries: ## build (once, cached) kube-apiserver/controller-manager/scheduler from k8s.io/kubernetes, kwok; apt etcd
	nice -n 5 $(RUN) ig-k8s build

BENCH_TARGETS += bench-k8s
.PHONY: bench-k8s
bench-k8s: ## time helm template + kubeconform + Rego, a kwok region install, and the suite brought up on the real nodes (per region to all pods Ready, image builds and sizes, node and pod memory)
	@mkdir -p $(ARTIFACTS)/bench
	$(RUN) ig-k8s bench $(ARTIFACTS)/bench/k8s.json
