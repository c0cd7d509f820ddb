# Maestro Conductor — the two commands: `make up` (run the suite) and `make test` (pass every test).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

export PATH := $(HOME)/.local/bin:$(PATH)
export UV_LINK_MODE ?= copy
UV ?= uv
RUN := $(UV) run --frozen
ARTIFACTS ?= $(CURDIR)/artifacts
export ARTIFACTS

# Each service adds its own targets in services/<name>/service.mk:
#   CHECK_TARGETS += ...   checks `make test` runs before pytest (e.g. opa test --coverage)
#   BENCH_TARGETS += ...   benchmarks `make bench` runs (each prints figures and writes JSON under artifacts/bench)
#   PYTEST_COVERED += ... test paths (globs) a check target already ran under pytest; the main run skips them
#   BESIDE_TARGETS += ...  checks `make test` runs beside the main pytest, not before it (a pytest of their own over
#                          PYTEST_COVERED paths: on this 2-core box the e2e tests spend much of their time waiting on
#                          processes, so a short second pytest fits in beside them; the real-node package did not:
#                          its pod start-ups beside the e2e tests failed the release flow's gateway latency stage and
#                          its own upgrade test, 2026-12-07)
CHECK_TARGETS :=
BESIDE_TARGETS :=
BENCH_TARGETS :=
PYTEST_COVERED :=
# End-to-end tests drive real processes on a shared 2-core box; a test that fails is run again up to twice and
# every rerun is reported ("R" in the progress line; each failed attempt with its output in
# $(ARTIFACTS)/<junit name>-reruns.txt, by ig_infra.rerun_record), so a real failure still fails.
PYTEST_RERUNS ?= --reruns 2 --reruns-delay 3
-include services/*/service.mk tools/*/tool.mk

# The libraries', services' and tools' own tests: not the e2e modules, not the real-node package (tools/k8s/tests/real),
# not policy's (policy-py-coverage runs those). `make test` runs them in the second lane, after policy coverage.
COMPONENT_TESTS := libs/ig-common/tests services/audit-portal/tests services/burn/tests services/evidence/tests \
                   services/migration/tests tools/infra/tests tools/region-test/tests tools/release-flow/tests \
                   tools/k8s/tests/test_*.py
BESIDE_TARGETS += test-components
PYTEST_COVERED += $(COMPONENT_TESTS)
# The evidence service's and the ledger's e2e modules start their own evidence service on free ports with a database
# of their own, so they run in the second lane as well, after the components (~160 s off the main run; the lane
# still ends before the main run reaches the real-node package).
E2E_BESIDE_TESTS := $(wildcard e2e/test_evidence_*.py e2e/test_ledger_*.py)
BESIDE_TARGETS += test-e2e-beside
PYTEST_COVERED += $(E2E_BESIDE_TESTS)

# Domain packages and the shared library are held to mypy --strict.
STRICT_PACKAGES := libs/ig-common/src/ig_common $(wildcard services/*/src/*/domain)

.PHONY: help bootstrap up up-regions down status infra-up infra-down services-up test lint typecheck proto proto-check \
        proto-lint test-unit test-integration test-components test-e2e-beside bench clean tools up-tools

help: ## list targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

# Debian's own python3 refuses pip installs (PEP 668) unless told; --user keeps uv out of the system's packages, and
# --ignore-installed puts it in ~/.local/bin even where the interpreter already holds a copy that is not on PATH.
bootstrap: ## install uv (if missing) and the locked Python workspace
	@command -v $(UV) >/dev/null 2>&1 || PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --quiet --user --ignore-installed uv
	$(UV) sync --all-packages --frozen --quiet

# The Go tools `make up` needs (cosign signs the release's evidence), built before the infra starts, two at a time.
UP_TOOLS := opa pushgateway prometheus dex cosign

# The regions `make up` starts: a,b (region-b's own PostgreSQL, Kafka, OPA and five services beside region-a), or
# a alone (`make up REGIONS=a`). See tools/infra/README.md, "Two regions".
REGIONS ?= a,b

# The services' profile: production windows unless asked. `make up` is the demo: its burn service divides every
# window by 86400 (30 d lasts 30 s) so that the release flow's burst fires and resolves the suite's alerts within
# the flow (services/burn/README.md, "Demo profile"); `ig-infra up` / `make services-up` alone keep production.
SUITE_PROFILE ?= production
up: SUITE_PROFILE := demo

# The release flow finds the infrastructure where ig-infra put it (IG_PG_PORT, IG_PROMETHEUS_PORT... may move it).
up: bootstrap up-tools infra-up services-up ## start everything, print addresses and health, run the v1.2.1 release flow
	@$(RUN) ig-infra status
	eval "$$($(RUN) ig-infra env)" && \
		$(RUN) ig-release run --version v1.2.1 --profile demo --artifacts $(ARTIFACTS)/release

up-regions: ## the same as make up (both regions; kept for scripts that named it)
	$(MAKE) up REGIONS=a,b

down: ## stop the services and the infrastructure (both regions)
	@$(RUN) ig-infra down || true

status: ## what runs where
	@$(RUN) ig-infra status

infra-up: bootstrap ## PostgreSQL, Kafka (KRaft), OPA ... as local processes (cached builds)
	$(RUN) ig-infra up --regions $(REGIONS)

infra-down:
	$(RUN) ig-infra down

services-up:
	$(RUN) ig-infra services up --regions $(REGIONS) --profile $(SUITE_PROFILE)

# Before any test runs: a first-time build inside a test would race the test's timeout.
tools: bootstrap ## build (once, cached) every Go tool the checks and tests use, two builds at a time
	$(RUN) ig-infra tools

up-tools: bootstrap
	$(RUN) ig-infra tools $(UP_TOOLS)

proto: bootstrap ## regenerate libs/ig-proto from proto/
	$(RUN) python tools/protogen/generate.py

proto-check: ## fail when generated code drifts from proto/
	$(RUN) python tools/protogen/generate.py --check

proto-lint: ## buf lint over proto/
	cd proto && "$$($(RUN) ig-infra tool buf)" lint

lint: ## ruff over everything
	$(RUN) ruff check .

typecheck: ## mypy --strict on the shared library and every domain package
	$(RUN) mypy --strict $(STRICT_PACKAGES)

test-unit: ## tests that need no infrastructure
	$(RUN) pytest -m "not integration and not e2e" -q

test-integration: infra-up ## tests against the real PostgreSQL, Kafka, OPA ...
	$(RUN) pytest -m "integration or e2e" -q

test-components: infra-up ## the libraries', services' and tools' own tests (COMPONENT_TESTS; make test runs them beside its e2e pytest)
	@mkdir -p $(ARTIFACTS)
	$(RUN) pytest $(COMPONENT_TESTS) -q -rR --junitxml=$(ARTIFACTS)/components-junit.xml $(PYTEST_RERUNS)

test-e2e-beside: infra-up ## the evidence and ledger e2e modules (E2E_BESIDE_TESTS; make test runs them in its second lane)
	@mkdir -p $(ARTIFACTS)
	$(RUN) pytest $(E2E_BESIDE_TESTS) -q -rR --junitxml=$(ARTIFACTS)/e2e-beside-junit.xml $(PYTEST_RERUNS)

# The tests start what they need beside region-a's infrastructure (e2e/test_two_regions.py runs a region-b of its
# own): region-b's idle Kafka, PostgreSQL and OPA would only take CPU from them.
test: REGIONS := a
# The BESIDE_TARGETS checks run one after another in a second lane, each writing to $(ARTIFACTS)/<target>.log, printed
# once the lane and the main run are done; the test fails if any of them failed.
test: bootstrap proto-check proto-lint lint typecheck tools infra-up $(CHECK_TARGETS) ## everything CI runs: checks, unit, integration, e2e
	@mkdir -p $(ARTIFACTS)
	@echo "beside the main pytest, one after another: $(BESIDE_TARGETS) (output: $(ARTIFACTS)/<target>.log)"; \
	for t in $(BESIDE_TARGETS); do rm -f $(ARTIFACTS)/$$t.rc; done; \
	{ for t in $(BESIDE_TARGETS); do \
	    started=$$(date +%s); \
	    $(MAKE) --no-print-directory REGIONS=$(REGIONS) $$t > $(ARTIFACTS)/$$t.log 2>&1 && code=0 || code=$$?; \
	    echo $$code > $(ARTIFACTS)/$$t.rc; \
	    echo "($$t took $$(( $$(date +%s) - started )) s)" >> $(ARTIFACTS)/$$t.log; \
	  done; } & \
	rc=0; $(RUN) pytest -q -rR --junitxml=$(ARTIFACTS)/junit.xml $(addprefix --ignore-glob=,$(PYTEST_COVERED)) \
	  $(PYTEST_RERUNS) || rc=$$?; \
	wait; \
	for t in $(BESIDE_TARGETS); do \
	  echo "=== $$t (ran beside the main pytest) ==="; cat $(ARTIFACTS)/$$t.log; \
	  if [ "$$(cat $(ARTIFACTS)/$$t.rc)" != 0 ]; then echo "$$t failed"; rc=1; fi; \
	done; \
	exit $$rc

bench: ## every benchmark; each prints its figures and writes JSON under artifacts/bench
	@mkdir -p $(ARTIFACTS)/bench
	@echo "benchmarks: $(BENCH_TARGETS)"
	@for t in $(BENCH_TARGETS); do $(MAKE) --no-print-directory $$t; done

clean: down
	rm -rf .venv $(ARTIFACTS)
