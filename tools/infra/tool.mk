# ig-infra: the local infrastructure and the two-region network. `make test` runs its tests; this is its benchmark.
BENCH_TARGETS += bench-bridge

.PHONY: bench-bridge

bench-bridge: ## the port bridge (make up's host <-> region namespaces hop) against a direct connection: round trips, 1 GiB, its CPU
	@mkdir -p $(ARTIFACTS)/bench
	$(RUN) python tools/infra/bench/bench_port_bridge.py --out $(ARTIFACTS)/bench/port-bridge.json
