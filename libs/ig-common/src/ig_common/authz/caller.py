"""Who is calling: the verified workload and, when it forwards one, the verified end user.

The authorization interceptor sets it for the duration of each call; servicers read it with ``current_caller()``
and take tenant and actor from it, never from a request field.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from ig_common.authz.user_token import ForwardedUser
from ig_common.spiffe import SpiffeId


@dataclass(frozen=True)
class Caller:
    workload: SpiffeId
    # Tenants the table lets this workload act for on its own (a release job registering bundles, say).
    tenants: frozenset[str]
    user: ForwardedUser | None = None

    @property
    def actor(self) -> str:
        """Who to record as having done it: the forwarded user, else the workload."""
        return f"{self.user.subject} via {self.workload}" if self.user else str(self.workload)

    def tenant_for(self, requested: str) -> str | None:
        """The tenant this call acts for. A forwarded user's own tenant, whatever the request says; for a
        workload alone, the requested tenant when the table grants it; None otherwise (never a wildcard)."""
        if self.user is not None:
            return self.user.tenant
        return requested if requested and requested in self.tenants else None


_CURRENT: ContextVar[Caller | None] = ContextVar("ig_caller", default=None)


def current_caller() -> Caller:
    caller = _CURRENT.get()
    if caller is None:
        # Reaching a servicer without the interceptor is a wiring bug; refusing is the only safe answer.
        raise PermissionError("no verified caller for this call (authorization interceptor not installed)")
    return caller


def bind_caller(caller: Caller | None) -> object:
    return _CURRENT.set(caller)


def unbind_caller(token: object) -> None:
    _CURRENT.reset(token)  # type: ignore[arg-type]
