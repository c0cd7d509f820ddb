"""The residency gate: a caller whose tenant is pinned to another region is refused before anything of theirs is
kept here.

The gate runs as soon as the caller's identity is verified, before the rate-limit bucket, the session, the access
entry or the ledger append: each of those would write the pinned tenant's data (its user, e-mail, tenant) into
this region's stores. So a residency refusal is counted and logged, never ledgered (``api.refusals`` records only
callers the guard has admitted as identified, which a refused caller never becomes). The region-a ledger keeps
the tenant's own trail.
"""

from __future__ import annotations

import structlog
from fastapi import HTTPException
from ig_common.residency import Residency, log_when_unconfigured
from prometheus_client import Counter

from ig_portal.domain.identity import Principal

log = structlog.get_logger(__name__)
RESIDENCY_REFUSALS = Counter("ig_portal_residency_refused_total",
                             "Requests of tenants pinned to another region than this portal's (IG_REGION)",
                             ["pinned_region"])


class ResidencyRefused(HTTPException):
    """403 for a tenant pinned elsewhere; such a caller pays from its address's bucket, as an anonymous one does."""


class ResidencyGate:
    def __init__(self, residency: Residency) -> None:
        self.residency = residency
        log_when_unconfigured(residency)

    def admit(self, principal: Principal, *, where: str) -> None:
        """Raise 403 (problem+json) when the principal's tenant may not be served from this region."""
        refusal = self.residency.refusal(principal.tenant)
        if refusal is None:
            return
        RESIDENCY_REFUSALS.labels(refusal.pinned_region).inc()
        # The tenant and region only: the user is the pinned tenant's data, not this region's to keep in its logs.
        log.warning("residency_refused", tenant=refusal.tenant, pinned_region=refusal.pinned_region,
                    serving_region=refusal.serving_region, where=where)
        raise ResidencyRefused(403, f"residency: {refusal.detail}; use the portal of {refusal.pinned_region}")
