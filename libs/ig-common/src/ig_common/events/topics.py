"""The platform's Kafka topics: the bus contract every service and the infra tool agree on."""

POLICY_DECISIONS = "ig.policy.decisions.v1"
EVIDENCE_BUNDLES = "ig.evidence.bundles.v1"
LEDGER_ENTRIES = "ig.ledger.entries.v1"
AUDIT_ACCESS = "ig.audit.access.v1"
BURN = "ig.burn.v1"
FLAGS = "ig.flags.v1"
INCIDENTS = "ig.incidents.v1"
MIGRATION = "ig.migration.v1"

ALL_TOPICS: tuple[str, ...] = (
    POLICY_DECISIONS, EVIDENCE_BUNDLES, LEDGER_ENTRIES, AUDIT_ACCESS, BURN, FLAGS, INCIDENTS, MIGRATION,
)
