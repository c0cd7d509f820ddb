# Release flow (tools/release-flow, `ig-release`): the v1.2.1 governance flow against the running suite, and the
# release alert rules' unit tests. Tests: e2e/test_release_flow.py (ci profile), e2e/test_runbooks.py,
# e2e/test_alert_rules.py.
RELEASE_VERSION ?= v1.2.1
RELEASE_PROFILE ?= demo
RELEASE_ARTIFACTS ?= $(ARTIFACTS)/release

CHECK_TARGETS += alerts-check

.PHONY: release alerts-check

release: ## the release flow against the running suite (after `make up`): RELEASE_PROFILE=demo|ci
	$(RUN) ig-release run --version $(RELEASE_VERSION) --profile $(RELEASE_PROFILE) --artifacts $(RELEASE_ARTIFACTS)

alerts-check: ## promtool check + unit tests of the alert rules the charts ship (charts/*/rules)
	@promtool="$$($(RUN) ig-infra tool promtool)"; \
	"$$promtool" check rules charts/*/rules/*.rules.yml || exit 1; \
	for tests in charts/*/rules/*.tests.yml; do \
	  (cd "$$(dirname "$$tests")" && "$$promtool" test rules "$$(basename "$$tests")") || exit 1; \
	done
