"""RPO and RTO from what the workload saw: pure functions over acknowledged writes and timestamps (no I/O).

RPO counts acknowledged writes that the promoted region does not have, and the seconds between the newest
acknowledged write it does have and the newest acknowledged write overall. RTO is the time from the injected
failure to the first write the promoted region acknowledged.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


class ThresholdError(ValueError):
    """A threshold given on the command line is not a finite, non-negative number of seconds."""


def parse_seconds(flag: str, raw: str | None) -> float:
    if raw is None:
        raise ThresholdError(f"{flag} is required (seconds, e.g. {flag} 300)")
    try:
        value = float(raw)
    except ValueError:
        raise ThresholdError(f"{flag} must be a number of seconds, got {raw!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ThresholdError(f"{flag} must be a finite number of seconds >= 0, got {raw!r}")
    return value


@dataclass(frozen=True)
class Ack:
    """One write the client saw committed: its sequence number, the region that acknowledged it and when."""

    seq: int
    region: str
    acked_at: float  # seconds on the run's monotonic clock


@dataclass(frozen=True)
class Rpo:
    lost_writes: int
    lost_seconds: float
    lost_sequence_numbers: tuple[int, ...]
    acknowledged_before_failure: int
    newest_acknowledged_seq: int | None
    newest_present_seq: int | None


@dataclass(frozen=True)
class Rto:
    seconds: float | None  # None: no write succeeded in the new region before the time limit
    time_limit: float

    @property
    def exceeded_time_limit(self) -> bool:
        return self.seconds is None


def measure_rpo(acks: Sequence[Ack], old_primary: str, present_in_new_primary: Iterable[int]) -> Rpo:
    """Acknowledged writes of ``old_primary`` that the promoted region lacks."""
    before = [ack for ack in acks if ack.region == old_primary]
    present = set(present_in_new_primary)
    lost = sorted(ack.seq for ack in before if ack.seq not in present)
    kept = [ack for ack in before if ack.seq in present]
    newest = max(before, key=lambda ack: ack.acked_at, default=None)
    newest_kept = max(kept, key=lambda ack: ack.acked_at, default=None)
    if not lost or newest is None:
        seconds = 0.0
    elif newest_kept is None:
        # Nothing acknowledged survived: the loss window starts at the first acknowledged write.
        seconds = newest.acked_at - min(ack.acked_at for ack in before)
    else:
        seconds = newest.acked_at - newest_kept.acked_at
    return Rpo(
        lost_writes=len(lost), lost_seconds=round(max(seconds, 0.0), 3), lost_sequence_numbers=tuple(lost),
        acknowledged_before_failure=len(before),
        newest_acknowledged_seq=newest.seq if newest else None,
        newest_present_seq=newest_kept.seq if newest_kept else None,
    )


def measure_rto(failure_at: float, acks: Sequence[Ack], new_primary: str, time_limit: float) -> Rto:
    """Seconds from ``failure_at`` to the first write ``new_primary`` acknowledged, within ``time_limit``."""
    after = [ack.acked_at for ack in acks if ack.region == new_primary and ack.acked_at >= failure_at]
    if not after or min(after) - failure_at > time_limit:
        return Rto(seconds=None, time_limit=time_limit)
    return Rto(seconds=round(min(after) - failure_at, 3), time_limit=time_limit)


@dataclass(frozen=True)
class Verdict:
    name: str
    passed: bool
    message: str


def judge(phase: str, rpo: Rpo, rto: Rto, *, max_rpo_seconds: float, max_rto_seconds: float,
          require_zero_loss: bool) -> list[Verdict]:
    """Threshold checks of one phase; with synchronous replication any lost acknowledged write fails."""
    verdicts = []
    if rto.seconds is None:
        verdicts.append(Verdict(f"{phase}.rto", False,
                                f"RTO exceeded: no write succeeded in the new primary within {rto.time_limit:g}s"))
    else:
        verdicts.append(Verdict(f"{phase}.rto", rto.seconds <= max_rto_seconds,
                                f"RTO {rto.seconds:.3f}s (limit {max_rto_seconds:g}s)"))
    rpo_ok = rpo.lost_seconds <= max_rpo_seconds
    message = f"RPO {rpo.lost_writes} acknowledged writes / {rpo.lost_seconds:.3f}s (limit {max_rpo_seconds:g}s)"
    if require_zero_loss:
        rpo_ok = rpo_ok and rpo.lost_writes == 0
        message += "; synchronous_commit=remote_apply requires 0 lost"
    verdicts.append(Verdict(f"{phase}.rpo", rpo_ok, message))
    return verdicts
