# Shared lookups: the tenant configuration (OPA data documents under data.ig.config) and assurance levels.
package ig.lib

config := data.ig.config

# The resource tenant's configuration governs: the data owner sets the rules. Defaults fill missing keys.
tenant := object.union(config.defaults, config.tenants[input.resource.tenant])

auth_level := object.get(config.auth_levels, input.context.auth_level, 0)

device_level := object.get(config.device_trust_levels, input.context.device_trust, 0)

# Multi-factor (or stronger) assurance, the level every step-up asks for.
mfa_level := config.auth_levels.mfa

has_mfa if auth_level >= mfa_level

request_ns := time.parse_rfc3339_ns(input.context.time)
