"""The service's clock decides time: a caller's ``context.time`` is only checked against it, never believed.

A gateway that forwards a client's clock, or a replayed request, must not pick the moment its time windows and
break-glass expiries are judged at, so the policy input carries the server's time and the sent time is accepted
only within a configured skew of it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from ig_policy.domain.validation import FieldError

Clock = Callable[[], datetime]


def time_errors(sent: datetime | None, now: datetime, skew: timedelta, field: str = "context.time") -> list[FieldError]:
    """The error naming ``field`` when the caller's time is further than ``skew`` from the server's ``now``."""
    if sent is None:
        return []  # a missing time is the validation's "is required"
    drift = sent - now
    if abs(drift) > skew:
        direction = "ahead of" if drift > timedelta(0) else "behind"
        return [FieldError(field, f"is {_human(abs(drift))} {direction} the server's clock "
                                  f"(at most {_human(skew)} is accepted)")]
    return []


def _human(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    if seconds >= 86_400:
        return f"{seconds // 86_400} d"
    if seconds >= 3600:
        return f"{seconds // 3600} h"
    if seconds >= 60:
        return f"{seconds // 60} min"
    return f"{seconds} s"
