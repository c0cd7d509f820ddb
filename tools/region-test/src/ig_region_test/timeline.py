"""What happened when: every step of a run, on one monotonic clock, with wall-clock time for humans."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

log = structlog.get_logger("region-test")


@dataclass
class Timeline:
    started_monotonic: float = field(default_factory=time.monotonic)
    events: list[dict[str, Any]] = field(default_factory=list)

    def now(self) -> float:
        """Seconds since the run started (the clock every measurement uses)."""
        return time.monotonic() - self.started_monotonic

    def add(self, phase: str, event: str, at: float | None = None, **details: Any) -> float:
        offset = self.now() if at is None else at
        wall = datetime.fromtimestamp(time.time() - (self.now() - offset), UTC)
        record = {"t": round(offset, 4), "at": wall.isoformat(timespec="milliseconds"), "phase": phase,
                  "event": event, **details}
        self.events.append(record)
        log.info(event, phase=phase, t=record["t"], **details)
        return offset
