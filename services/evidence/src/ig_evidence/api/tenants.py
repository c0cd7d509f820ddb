"""Which tenant a call acts for, from the verified caller: shared by the evidence RPCs and the ledger's appends and
reads."""

from __future__ import annotations

from typing import Any

import grpc
from ig_common.authz import AuthorizationTable, current_caller

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


async def _named_tenant(requested: str, context: Context, *, field: str) -> None:
    if not TENANT.fullmatch(requested):
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                            f"{field}: {requested!r} is not a tenant name (1..63 of a-z, 0-9, '-')")


async def admit_append_for(requested: str, context: Context, residency: ResidencyGate, *, field: str,
                           method: str) -> str:
    """The tenant an append names, once the caller may act for exactly that tenant and this region may hold its
    entries; the call is aborted otherwise, before anything is stored.

    Stricter than the evidence RPCs' ``acting_tenant``, which serves a forwarded user's own tenant whatever the request
    names: an entry is kept for good, so a request naming another tenant than the user's is refused, not
    re-read as the user's."""
    await _named_tenant(requested, context, field=field)
    tenant = await acting_tenant(requested, context, field=field)
    if tenant != requested:
        await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                            f"{field}: {current_caller().actor} acts for tenant {tenant!r}, not {requested!r}")
    await residency.admit(tenant, context, method=method)
    return tenant


async def admit_ledger_read_for(requested: str, context: Context, residency: ResidencyGate,
                                table: AuthorizationTable, *, method: str, field: str = "tenant") -> str:
    """The tenant a ledger read (Get, List) names, once the verified caller may read exactly that tenant's entries
    and this region serves it; the call is aborted otherwise, before the ledger is read.

    Who may: a forwarded user, for the user's own tenant only (naming another is refused, as for appends: a user's
    read is never widened nor silently re-scoped); a workload alone, for a tenant the table lets it act for
    (``tenants``) or read (``ledger_readers``). No wildcard and no "every tenant": a caller reads one tenant."""
    await _named_tenant(requested, context, field=field)
    caller = current_caller()
    if caller.user is not None:
        allowed = caller.user.tenant == requested
    else:
        allowed = (caller.tenant_for(requested) == requested or
                   requested in table.ledger_tenants_readable_by(caller.workload.name))
    if not allowed:
        await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                            f"{field}: {caller.actor} may not read the ledger entries of tenant {requested!r}")
    await residency.admit(requested, context, method=method)
    return requested
