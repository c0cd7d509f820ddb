# Shared lookups: the tenant configuration (OPA data documents under data.ig.config) and assurance levels.
#
# What a decision costs: OPA evaluates every rule afresh for each decision, and one rule evaluation costs about as
# much as ten simple expressions. So the rules are few and do their work inline, and tenant settings are read leaf
# by leaf instead of merging the defaults into the tenant's document (object.union built a whole new document on
# every decision: ~130 us and ~400 allocations). Two forms, both giving what object.union(defaults, tenant) held:
# - settings the defaults always define: object.get(lib.tenant, path, data.ig.config.defaults.<path>)
#   (tests/config_test.rego checks that the defaults do define them);
# - per-action / per-classification entries and the pinned region, which the defaults usually leave out:
#   object.get(lib.tenant, path, object.get(data.ig.config.defaults, path, null)), null meaning "no entry".
package ig.lib

# The resource tenant's configuration governs: the data owner sets the rules. Undefined for an unconfigured tenant,
# which leaves every tenant-specific rule silent (ig.tenant.unknown denies it).
tenant := data.ig.config.tenants[input.resource.tenant]

auth_level := object.get(data.ig.config.auth_levels, input.context.auth_level, 0)

device_level := object.get(data.ig.config.device_trust_levels, input.context.device_trust, 0)

# Multi-factor (or stronger) assurance, the level every step-up asks for.
has_mfa if auth_level >= data.ig.config.auth_levels.mfa

request_ns := time.parse_rfc3339_ns(input.context.time)
