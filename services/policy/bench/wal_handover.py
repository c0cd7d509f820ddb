"""The durable hand-over's cost, in-process: how long a decision waits to be handed to the decision log.

Three hand-overs, each with ``concurrency`` deciders recording ``decisions`` golden-mix decisions as fast as they
can (closed loop), on the machine's real disk (a temporary directory beside the repository's run dir):

- ``memory``: the previous hand-over's request-path work - the decision appended to a list that a timer pickles
  and sends to the writer every 50 ms (pickling included, the socket write not); a killed process lost the list.
- ``wal_write``: the WAL, the answer waiting for its group commit's ``write`` (survives a killed process).
- ``wal_fsync``: the WAL as shipped, the answer waiting for its group commit's ``fdatasync`` (survives a machine
  crash).

Reports per mode: decisions/s, the wait per decision (p50/p95/p99 ms) and, for the WAL, the group commits' size
and the write+sync time. Run alone: ``uv run python services/policy/bench/wal_handover.py``; ``make bench-policy``
runs it and puts the figures in its report under ``decision_log_handover``.
"""

from __future__ import annotations

import asyncio
import json
import pickle
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ig_policy.decisions import new_decision_id
from ig_policy.domain.model import Decision, Reason, Result, Verdict
from ig_policy.domain.wal_entry import encode_decision
from ig_policy.store.wal import WAL_BATCH_RECORDS, WAL_SYNC_SECONDS, WalSettings, WriteAheadLog
from ig_policy.testing import golden_cases
from prometheus_client import Histogram


def _decision() -> Decision:
    verdict = Verdict(Result.ALLOW, "ig.purpose.allow_read", "read allowed for the tenant's own purpose",
                      (Reason("ig.purpose.allow_read", "read allowed for the tenant's own purpose"),))
    return Decision(new_decision_id(), verdict, "sha256:" + "0" * 32, datetime.now(UTC), 1.2, frozenset({"alice"}))


class MemoryHandover:
    """The request-path side of the previous hand-over (ig_policy.store.log_process before the WAL)."""

    def __init__(self) -> None:
        self._pending: list[tuple[Any, Decision]] = []
        self._timer: asyncio.TimerHandle | None = None

    async def record(self, policy_input: Any, decision: Decision) -> None:
        self._pending.append((policy_input, decision))
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(0.05, self._flush)

    def _flush(self) -> None:
        self._timer = None
        batch, self._pending = self._pending, []
        pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)


class WalHandover:
    def __init__(self, wal: WriteAheadLog) -> None:
        self._wal = wal

    async def record(self, policy_input: Any, decision: Decision) -> None:
        await self._wal.append(encode_decision(policy_input, decision))


async def _drive(sink: Any, decisions: int, concurrency: int) -> dict[str, float]:
    inputs = [c.input for c in golden_cases()]
    waits: list[float] = []

    async def decider(index: int) -> None:
        for n in range(index, decisions, concurrency):
            started = time.perf_counter()
            await sink.record(inputs[n % len(inputs)], _decision())
            waits.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(decider(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - started
    cuts = statistics.quantiles(waits, n=100)
    return {"decisions_per_s": round(decisions / elapsed), "wait_p50_ms": round(cuts[49] * 1000, 3),
            "wait_p95_ms": round(cuts[94] * 1000, 3), "wait_p99_ms": round(cuts[98] * 1000, 3)}


def _totals(histogram: Histogram) -> tuple[float, float]:
    samples = {s.name: s.value for f in histogram.collect() for s in f.samples}
    return next(v for k, v in samples.items() if k.endswith("_sum")), \
        next(v for k, v in samples.items() if k.endswith("_count"))


async def _wal_mode(directory: Path, fsync: bool, decisions: int, concurrency: int) -> dict[str, float]:
    wal = WriteAheadLog(WalSettings(directory, fsync=fsync))
    wal.open()
    committing = asyncio.create_task(wal.run())
    sync_before, batches_before = _totals(WAL_SYNC_SECONDS)
    records_before, _ = _totals(WAL_BATCH_RECORDS)
    figures = await _drive(WalHandover(wal), decisions, concurrency)
    sync_after, batches_after = _totals(WAL_SYNC_SECONDS)
    records_after, _ = _totals(WAL_BATCH_RECORDS)
    await wal.close()
    await committing
    commits = batches_after - batches_before
    figures.update(group_commits=commits, records_per_commit=round((records_after - records_before) / commits, 1),
                   write_sync_mean_ms=round((sync_after - sync_before) / commits * 1000, 3))
    return figures


async def handover_costs(decisions: int = 5000, concurrency: int = 32) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory(dir="/var/tmp") as scratch:
        return {
            "memory": await _drive(MemoryHandover(), decisions, concurrency),
            "wal_write": await _wal_mode(Path(scratch) / "write", False, decisions, concurrency),
            "wal_fsync": await _wal_mode(Path(scratch) / "fsync", True, decisions, concurrency),
            "decisions": decisions, "concurrency": concurrency,  # type: ignore[dict-item]
        }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(handover_costs()), indent=2))
