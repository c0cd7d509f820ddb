# Audit Portal (services/audit-portal).
CHECK_TARGETS += portal-browser-prereqs
BENCH_TARGETS += bench-portal

.PHONY: portal-browser-prereqs bench-portal
portal-browser-prereqs: ## portal: Debian's chromium for the Playwright e2e (never a downloaded browser)
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

bench-portal: ## portal: 200 API clients list + download for 60 s vs raw GetArtifact (p50/p95/p99, throughput)
	@mkdir -p $(ARTIFACTS)/bench
	$(RUN) ig-infra up postgres kafka dex
	$(RUN) python services/audit-portal/bench/bench_portal.py
