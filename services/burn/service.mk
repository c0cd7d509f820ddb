# Error-Budget service + Flag Registry (services/burn).
BENCH_TARGETS += bench-burn

.PHONY: bench-burn
bench-burn: ## burn: 1,000 SLOs per tick against a real Prometheus + OFREP p95 under 100 clients
	@mkdir -p $(ARTIFACTS)/bench
	$(RUN) ig-infra up postgres kafka
	$(RUN) ig-infra tool prometheus >/dev/null
	$(RUN) ig-infra tool promtool >/dev/null
	$(RUN) python services/burn/bench/bench_burn.py
