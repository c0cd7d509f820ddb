# Policy Reasoner v2 (services/policy): checks `make test` runs first, and the benchmark.
POLICY_REGO := policies/rego
POLICY_COVERAGE_MIN := 90

CHECK_TARGETS += policy-gateway-prereqs policy-rego-test
BESIDE_TARGETS += policy-py-coverage
BENCH_TARGETS += bench-policy bench-replay

.PHONY: policy-gateway-prereqs policy-rego-test policy-py-coverage bench-policy bench-replay

policy-gateway-prereqs: ## policy: Debian's nginx (auth_request) for the real-gateway e2e (e2e/test_policy_nginx.py)
	@command -v nginx >/dev/null 2>&1 || test -x /usr/sbin/nginx || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light; }

policy-rego-test: ## opa test over policies/rego; fails when policy coverage drops below 90 %
	@mkdir -p $(ARTIFACTS)
	@opa="$$($(RUN) ig-infra tool opa)"; \
	"$$opa" check $(POLICY_REGO); \
	"$$opa" fmt --fail --list $(POLICY_REGO) >/dev/null || { echo "opa fmt: reformat $(POLICY_REGO)"; exit 1; }; \
	"$$opa" test $(POLICY_REGO); \
	"$$opa" test --coverage --threshold $(POLICY_COVERAGE_MIN) $(POLICY_REGO) > $(ARTIFACTS)/policy-rego-coverage.json \
	  || { echo "opa test --coverage below $(POLICY_COVERAGE_MIN) % (see $(ARTIFACTS)/policy-rego-coverage.json)"; exit 1; }; \
	$(RUN) python -c "import json,sys; print('rego coverage: %.1f %%' % json.load(open(sys.argv[1]))['coverage'])" \
	  $(ARTIFACTS)/policy-rego-coverage.json

policy-py-coverage: infra-up policy-gateway-prereqs ## pytest over services/policy + e2e/test_policy_*; fails below 90 % line coverage
	@mkdir -p $(ARTIFACTS)
	$(RUN) pytest services/policy e2e/test_policy_*.py -q $(PYTEST_RERUNS) -rR --junitxml=$(ARTIFACTS)/policy-junit.xml \
	  --cov=ig_policy --cov-config=services/policy/.coveragerc --cov-report=term:skip-covered --cov-report=json:$(ARTIFACTS)/policy-py-coverage.json \
	  --cov-fail-under=$(POLICY_COVERAGE_MIN)

bench-policy: infra-up ## >= 20,000 decisions, 32 callers: raw OPA REST vs Decide; writes artifacts/bench/policy.json
	@mkdir -p $(ARTIFACTS)/bench
	$(RUN) python services/policy/bench/bench_policy.py --decisions 10000 --concurrency 32 --out $(ARTIFACTS)/bench/policy.json

REPLAY_DECISIONS ?= 100000

bench-replay: infra-up ## ig-policy replay speed over a synthetic decision log (REPLAY_DECISIONS=1000000 for the issue's size); writes artifacts/bench/policy-replay.json
	@mkdir -p $(ARTIFACTS)/bench
	$(RUN) python services/policy/bench/bench_replay.py --decisions $(REPLAY_DECISIONS) --out $(ARTIFACTS)/bench/policy-replay.json

# policy-py-coverage runs these under pytest (beside the main run); the main pytest run skips them.
PYTEST_COVERED += services/policy e2e/test_policy_*.py
