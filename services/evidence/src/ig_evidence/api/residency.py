"""The residency gate of the evidence service: a call acting for a tenant pinned to another region than this
service's (IG_REGION) is refused before any byte of it is stored or anything of the tenant is read.

The tenant judged is the one the call acts for as the authorization interceptor verified it (a forwarded user's
own tenant, or the one the table grants the calling workload), never a request field's claim; the region judged
is this service's configuration. The refusal is FAILED_PRECONDITION, not PERMISSION_DENIED: the caller may act
for the tenant (the table said so), only not in this region, and no other credentials would change that. It tells
a client to go to the pinned region instead of retrying, and keeps residency apart from authorization refusals in
the logs and alerts.
"""

from __future__ import annotations

from typing import Any

import grpc
import structlog
from ig_common.authz import current_caller
from ig_common.residency import Residency, log_when_unconfigured
from prometheus_client import Counter

log = structlog.get_logger(__name__)
RESIDENCY_REFUSALS = Counter("ig_evidence_residency_refused_total",
                             "Calls acting for a tenant pinned to another region than this service's (IG_REGION)",
                             ["pinned_region"])

Context = grpc.aio.ServicerContext[Any, Any]


class ResidencyGate:
    def __init__(self, residency: Residency) -> None:
        self.residency = residency
        log_when_unconfigured(residency)

    async def admit(self, tenant: str, context: Context, *, method: str) -> None:
        """Abort the call (FAILED_PRECONDITION naming both regions) when ``tenant`` may not be served here."""
        refusal = self.residency.refusal(tenant)
        if refusal is None:
            return
        RESIDENCY_REFUSALS.labels(refusal.pinned_region).inc()
        # The workload and the tenant only: a forwarded user is the pinned tenant's data, not this region's to log.
        log.warning("residency_refused", tenant=refusal.tenant, pinned_region=refusal.pinned_region,
                    serving_region=refusal.serving_region, method=method, workload=str(current_caller().workload))
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                            f"residency: {refusal.detail}; call the evidence service of {refusal.pinned_region}")

    async def admit_forwarded_user(self, context: Context, *, method: str) -> None:
        """For calls that name no tenant (the ledger's reads): when the verified caller forwards an end user, the call
        is that user's tenant's and is judged as such; a workload alone acts for no tenant here."""
        user = current_caller().user
        if user is not None:
            await self.admit(user.tenant, context, method=method)
