"""The wire between the service process and its decision-log writer: framed messages and mirrored metrics.

Both ends are this service's own processes on one socket pair, so a frame is a 4-byte length and a pickle.
The decisions themselves go through the write-ahead log (``ig_policy.store.wal``), which outlives both processes;
the socket carries the writer's ``Status(settled, totals)`` - how many decisions it has taken from the WAL so far,
and its metric totals, which the service process exposes on its own /metrics (one scrape target per pod) - and,
from the service, only the end of the stream, which tells the writer to take what the WAL holds and exit.
"""

from __future__ import annotations

import asyncio
import pickle
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import Counter, Gauge

_LENGTH = struct.Struct(">I")
# A frame is one status report (kilobytes); anything this large is a bug.
MAX_FRAME_BYTES = 64 * 1024 * 1024

# Metric key: (sample name, sorted label pairs).
MetricKey = tuple[str, tuple[tuple[str, str], ...]]


@dataclass(frozen=True)
class Status:
    settled: int
    totals: dict[MetricKey, float]


Message = Status


def encode(message: Message) -> bytes:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(payload)) + payload


async def read_message(reader: asyncio.StreamReader) -> Message | None:
    """The next message, or None at the end of the stream (the other process closed its end, exited or died)."""
    try:
        header = await reader.readexactly(_LENGTH.size)
        (length,) = _LENGTH.unpack(header)
        if length > MAX_FRAME_BYTES:
            raise ValueError(f"handoff frame of {length} bytes exceeds {MAX_FRAME_BYTES}")
        message = pickle.loads(await reader.readexactly(length))
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    if not isinstance(message, Status):
        raise TypeError(f"unexpected handoff message {type(message).__name__}")
    return message


def metric_totals(metrics: Iterable[Counter | Gauge]) -> dict[MetricKey, float]:
    """The current value of every sample of ``metrics`` (``_created`` timestamps left out)."""
    totals: dict[MetricKey, float] = {}
    for metric in metrics:
        for family in metric.collect():
            for sample in family.samples:
                if not sample.name.endswith("_created"):
                    totals[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return totals


class MetricMirror:
    """Applies a writer's totals to this process's metric objects of the same names.

    Counters advance by the difference from the writer's previous report; a new writer process starts from zero,
    so ``restart()`` forgets the previous one's totals and counters keep counting up across restarts.
    """

    def __init__(self, counters: Iterable[Counter], gauges: Iterable[Gauge]) -> None:
        self._counters = {f"{_family_name(c)}_total": c for c in counters}
        self._gauges = {_family_name(g): g for g in gauges}
        self._last: dict[MetricKey, float] = {}

    def restart(self) -> None:
        self._last = {}

    def apply(self, totals: dict[MetricKey, float]) -> None:
        for key, value in totals.items():
            name, labels = key
            if name in self._counters:
                delta = value - self._last.get(key, 0.0)
                if delta > 0:
                    counter = self._counters[name]
                    (counter.labels(**dict(labels)) if labels else counter).inc(delta)
            elif name in self._gauges:
                gauge = self._gauges[name]
                (gauge.labels(**dict(labels)) if labels else gauge).set(value)
        self._last = dict(totals)


def _family_name(metric: Counter | Gauge) -> str:
    return next(iter(metric.describe())).name
