# region-test: multi-region readiness (two regions in network namespaces, measured failover, residency proofs).
# `make test` runs the short CI profile through pytest (e2e/test_region_failover.py, artifacts in
# $(ARTIFACTS)/region). These targets run it by hand and as a benchmark.
BENCH_TARGETS += bench-region

.PHONY: region-test bench-region failover failback

region-test: ## the CI readiness run by hand: failover + failback, remote_apply, artifacts in artifacts/region
	$(RUN) region-test --simulate-failover --assert-rpo 300 --assert-rto 1800 --failback \
		--artifacts $(ARTIFACTS)/region

bench-region: ## failover figures against the goals (RTO <= 10 s; RPO 0 with remote_apply; async RPO reported); the suite's too
	@mkdir -p $(ARTIFACTS)/bench/region-sync $(ARTIFACTS)/bench/region-async
	$(RUN) region-test --simulate-failover --assert-rpo 0 --assert-rto 10 --failback --warmup 10 \
		--artifacts $(ARTIFACTS)/bench/region-sync
	$(RUN) region-test --simulate-failover --assert-rpo 300 --assert-rto 10 --replication async --failback \
		--warmup 10 --artifacts $(ARTIFACTS)/bench/region-async
	@$(RUN) python -c "import json,sys; \
	  r={m: json.load(open('$(ARTIFACTS)/bench/region-'+m+'/multi-region/multi-region-results.json')) for m in ('sync','async')}; \
	  out={m: [{k: p[k] for k in ('phase','rto_seconds','rpo_lost_writes','rpo_lost_seconds')} for p in v['phases']] for m, v in r.items()}; \
	  json.dump(out, open('$(ARTIFACTS)/bench/region.json','w'), indent=2); print(json.dumps(out, indent=2))"
	@# The suite's own failover (ig_region_test.suite_failover) on a private two-region suite, against the goal.
	IG_FAILOVER_MAX_RTO=10 IG_FAILOVER_REPORT=$(ARTIFACTS)/bench/suite-failover.json \
		$(RUN) pytest e2e/test_suite_failover.py -q -p no:cacheprovider
	@$(RUN) python -c "import json; d=json.load(open('$(ARTIFACTS)/bench/suite-failover.json')); \
	  print(json.dumps({k: d[k] for k in ('rto_seconds','rto_goal_seconds','rpo_lost_writes','passed')}))"

# The running suite's own failover (`make up`'s two regions): partition region-a, promote region-b's global replica,
# region-b takes over for global tenants; `make failback` undoes it. Report in $(ARTIFACTS)/failover/.
failover: ## failover of the running two-region suite: RPO/RTO, fence, region-b serves beta and refuses alpha
	$(RUN) ig-infra failover --max-rto 10

failback: ## region-a's global cluster back (pg_rewind or base backup), then switched back to primary
	$(RUN) ig-infra failback
