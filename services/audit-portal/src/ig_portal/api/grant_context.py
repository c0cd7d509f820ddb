"""The access grant that admitted the current request to a release (set by the catalog's gate, read by the
watermark): a context variable, so it follows the request's own task and nothing else."""

from __future__ import annotations

import contextvars

from ig_portal.domain.grants import Grant

_ADMITTED: contextvars.ContextVar[Grant | None] = contextvars.ContextVar("ig_portal_admitted_grant", default=None)


def admitted_grant() -> Grant | None:
    return _ADMITTED.get()


def admit_through(grant: Grant | None) -> None:
    _ADMITTED.set(grant)
