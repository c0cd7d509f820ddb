# Migration Orchestrator: benchmark (1,000,000 assets rows by default; IG_BENCH_ROWS to change).
BENCH_TARGETS += bench-migration

.PHONY: bench-migration
bench-migration: ## migration: backfill rows/s (with/without writes) vs INSERT...SELECT, cutover lock p99, shadow-read/s
	@mkdir -p $(ARTIFACTS)/bench
	$(RUN) python services/migration/bench/bench_migration.py
