"""The phase machine: which phase follows which, and what a backout or a failure leaves serving."""

from __future__ import annotations

from enum import StrEnum


class Phase(StrEnum):
    SUBMITTED = "submitted"
    PREFLIGHT = "preflight"
    EXPAND = "expand"
    DUAL_WRITE = "dual-write"
    BACKFILL = "backfill"
    SHADOW_READ = "shadow-read"
    BASELINE = "baseline"
    CUTOVER = "cutover"
    ACA = "aca"
    VERIFY = "verify"
    CONTRACT = "contract"
    COMPLETED = "completed"
    BACKED_OUT = "backed-out"
    FAILED = "failed"


# The forward path; a run executes the phases after the last completed one, in this order.
FORWARD: tuple[Phase, ...] = (
    Phase.SUBMITTED, Phase.PREFLIGHT, Phase.EXPAND, Phase.DUAL_WRITE, Phase.BACKFILL, Phase.SHADOW_READ,
    Phase.BASELINE, Phase.CUTOVER, Phase.ACA, Phase.VERIFY, Phase.CONTRACT, Phase.COMPLETED,
)
TERMINAL = frozenset({Phase.COMPLETED, Phase.BACKED_OUT})


class PhaseError(ValueError):
    pass


def next_phase(done: Phase) -> Phase:
    """The phase to run after ``done`` completed."""
    if done in TERMINAL:
        raise PhaseError(f"the change is already {done.value}")
    if done is Phase.FAILED:
        raise PhaseError("the change failed; back it out or submit it again")
    return FORWARD[FORWARD.index(done) + 1]


def remaining(done: Phase, until: Phase | None = None) -> list[Phase]:
    """Phases still to run after ``done``, stopping after ``until`` when given."""
    if done in TERMINAL or done is Phase.FAILED:
        return []
    if until is not None and until not in FORWARD:
        raise PhaseError(f"cannot run until {until.value}")
    start = FORWARD.index(done) + 1
    stop = FORWARD.index(until) + 1 if until is not None else len(FORWARD)
    return list(FORWARD[start:stop])


def parse_phase(text: str) -> Phase:
    try:
        return Phase(text)
    except ValueError:
        raise PhaseError(f"unknown phase {text!r}; one of {', '.join(p.value for p in Phase)}") from None
