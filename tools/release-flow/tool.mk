# Release flow (tools/release-flow, `ig-release`): the v1.2.1 governance flow against the running suite, and the
# release alert rules' unit tests. Tests: e2e/test_release_flow.py (ci profile), e2e/test_runbooks.py,
# e2e/test_alert_rules.py.
RELEASE_VERSION ?= v1.2.1
RELEASE_PROFILE ?= demo
RELEASE_ARTIFACTS ?= $(ARTIFACTS)/release
# The release's images to attest in its provenance: the file `make k8s-up` names (ig-k8s images --subjects).
IMAGE_SUBJECTS ?=

CHECK_TARGETS += alerts-check

.PHONY: release alerts-check

# The suite's identities, keys and addresses, as `make up` gives them to its own run of the flow.
release: ## the release flow against the running suite (after `make up`): RELEASE_PROFILE=demo|ci, IMAGE_SUBJECTS=file
	eval "$$($(RUN) ig-infra env)" && \
	  $(RUN) ig-release run --version $(RELEASE_VERSION) --profile $(RELEASE_PROFILE) --artifacts $(RELEASE_ARTIFACTS) \
	  $(if $(IMAGE_SUBJECTS),--image-subjects $(IMAGE_SUBJECTS))

alerts-check: ## promtool check + unit tests of the alert rules the charts ship (charts/*/rules)
	@promtool="$$($(RUN) ig-infra tool promtool)"; \
	"$$promtool" check rules charts/*/rules/*.rules.yml || exit 1; \
	for tests in charts/*/rules/*.tests.yml; do \
	  (cd "$$(dirname "$$tests")" && "$$promtool" test rules "$$(basename "$$tests")") || exit 1; \
	done
