"""Which tenant a call acts for, from the verified caller: shared by the evidence RPCs and the ledger's appends."""

from __future__ import annotations

from typing import Any

import grpc
from ig_common.authz import current_caller

from ig_evidence.api.residency import ResidencyGate
from ig_evidence.domain.trusted_signers import TENANT

Context = grpc.aio.ServicerContext[Any, Any]


async def acting_tenant(requested: str, context: Context, *, field: str = "tenant") -> str:
    """The tenant this call may act for, from the verified caller (a forwarded user's own tenant, or one the table
    grants the calling workload); the request's field only names which of a workload's tenants is meant. There is
    no wildcard: an empty or ungranted tenant is refused."""
    caller = current_caller()
    tenant = caller.tenant_for(requested)
    if tenant is None:
        await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                            f"{field}: {caller.workload} may not act for tenant {requested!r}")
    assert tenant is not None
    return tenant


async def admit_append_for(requested: str, context: Context, residency: ResidencyGate, *, field: str,
                           method: str) -> str:
    """The tenant an append names, once the caller may act for exactly that tenant and this region may hold its
    entries; the call is aborted otherwise, before anything is stored.

    Stricter than the reads' ``acting_tenant``, which serves a forwarded user's own tenant whatever the request
    names: an entry is kept for good, so a request naming another tenant than the user's is refused, not
    re-read as the user's."""
    if not TENANT.fullmatch(requested):
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                            f"{field}: {requested!r} is not a tenant name (1..63 of a-z, 0-9, '-')")
    tenant = await acting_tenant(requested, context, field=field)
    if tenant != requested:
        await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                            f"{field}: {current_caller().actor} acts for tenant {tenant!r}, not {requested!r}")
    await residency.admit(tenant, context, method=method)
    return tenant
