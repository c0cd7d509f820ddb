# Evidence + Provenance Ledger (services/evidence): the release evidence flow and the benchmark.
#   make evidence VERSION=v1.2.1   build -> verify (ig-evidence + the real cosign) -> register with the service
# Inputs are <EVIDENCE_INPUTS>/<type>/<files> (types: policies/evidence/release-contract.v1.yaml).
BENCH_TARGETS += bench-evidence

EVIDENCE_INPUTS ?= $(ARTIFACTS)/evidence-inputs/$(VERSION)
EVIDENCE_OUT ?= $(ARTIFACTS)/evidence/$(VERSION)
# The evidence service accepts a bundle only from a signer pinned for its tenant (IG_TRUSTED_SIGNERS_PATH): locally
# that is the release key ig-infra made and pinned (IG_RELEASE_SIGNING_KEY); CI passes its own, pinned the same way.
EVIDENCE_KEY ?= $(or $(IG_RELEASE_SIGNING_KEY),$(shell $(RUN) ig-infra env | sed -n 's/^export IG_RELEASE_SIGNING_KEY=//p'))
EVIDENCE_PUB ?= $(patsubst %.key,%.pub,$(EVIDENCE_KEY))
EVIDENCE_CONTRACT ?= policies/evidence/release-contract.v1.yaml
EVIDENCE_LEDGER ?= 127.0.0.1:50052
EVIDENCE_SERVER ?= $(EVIDENCE_LEDGER)
EVIDENCE_PREVIOUS ?=
# The tenant the release is registered for: one the release identity is granted (policies/authz/grpc-methods.yaml).
EVIDENCE_TENANT ?= alpha
# ig-evidence talks to the ledger and the evidence service as the release identity (mTLS); ig-infra env says where
# the local suite's certificates are.
EVIDENCE_IDENTITY := export IG_IDENTITIES="$${IG_IDENTITIES:-$$($(RUN) ig-infra env | sed -n 's/^export IG_IDENTITIES=//p')}"
# cosign 2.x wants a trusted root for a v0.3 bundle and would fetch Sigstore's public one over TUF; this empty
# one (no CAs, no logs) keeps verification offline and key-only.
EVIDENCE_TRUSTED_ROOT ?= policies/evidence/cosign-offline-trusted-root.json
EVIDENCE_FLAGS ?=

.PHONY: evidence bench-evidence

evidence: ## build, sign, verify (ig-evidence + real cosign) and register a release's evidence: VERSION=v1.2.1
	@test -n "$(VERSION)" || { echo "usage: make evidence VERSION=v1.2.1 [EVIDENCE_INPUTS=dir]"; exit 2; }
	@mkdir -p $(dir $(EVIDENCE_OUT))
	$(EVIDENCE_IDENTITY); SOURCE_DATE_EPOCH="$${SOURCE_DATE_EPOCH:-$$(git log -1 --format=%ct)}" $(RUN) ig-evidence build \
	  --release $(VERSION) --inputs $(EVIDENCE_INPUTS) --out $(EVIDENCE_OUT) --key $(EVIDENCE_KEY) \
	  --contract $(EVIDENCE_CONTRACT) --ledger $(EVIDENCE_LEDGER) --tenant $(EVIDENCE_TENANT) --force \
	  $(if $(EVIDENCE_PREVIOUS),--previous $(EVIDENCE_PREVIOUS)) $(EVIDENCE_FLAGS)
	$(RUN) ig-evidence verify $(EVIDENCE_OUT) --key $(EVIDENCE_PUB) --contract $(EVIDENCE_CONTRACT)
	"$$($(RUN) ig-infra tool cosign)" verify-blob --key $(EVIDENCE_PUB) \
	  --bundle $(EVIDENCE_OUT)/manifest.sigstore.json --insecure-ignore-tlog=true \
	  --trusted-root $(EVIDENCE_TRUSTED_ROOT) $(EVIDENCE_OUT)/manifest.json
	$(EVIDENCE_IDENTITY); $(RUN) ig-evidence register $(EVIDENCE_OUT) --release $(VERSION) --server $(EVIDENCE_SERVER) \
	  --tenant $(EVIDENCE_TENANT)

bench-evidence: ## evidence: 1 GiB bundle vs sha256sum, memory; ledger appends/s (in-process and through gRPC: 8 and 200 writers, AppendBatch); verify 100k chain; tiles: proofs + RSS at 10k/1M (IG_BENCH_TILE_SIZES)
	@mkdir -p $(ARTIFACTS)/bench
	$(RUN) ig-infra up postgres kafka
	$(RUN) python services/evidence/bench/bench_evidence.py
