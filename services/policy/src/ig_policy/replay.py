"""``ig-policy replay``: the logged decisions of a time range, re-evaluated against a candidate policy.

Each record's input is opened with the replay key's private half (only this tool holds it) and asked of a private
OPA running the candidate (ig_policy.engine.candidate). The input is the one the service judged, with the
``context.time`` its own clock gave it then (ig_policy.clock), so time windows and expiries are judged at the
moment of the original decision, not at replay time. The answers are compared with what the service answered
(ig_policy.domain.impact). With ``--max-changes`` or ``--max-change-ratio`` it is a CI gate: exit status 1 when
the impact is larger, or when any decision could not be replayed (unknown impact).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from ig_policy.clock import parse_instant
from ig_policy.domain.impact import ImpactReport, LoggedDecision, Threshold, render_text
from ig_policy.domain.protection import InputOpener, ProtectionKeyError, SealedInputError
from ig_policy.engine.candidate import CandidateEngine, CandidateError, candidate_engine, find_opa
from ig_policy.protection_keys import load_opener
from ig_policy.store import SCHEMA
from ig_policy.store.replay_source import LoggedRow, logged_decisions

KEY_VARIABLE = "IG_DECISION_LOG_REPLAY_KEY_FILE"
_RELATIVE = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
EXIT_EXCEEDED = 1
EXIT_USAGE = 2


class UsageError(ValueError):
    """A bad argument or key: the message names it; exit status 2."""


def parse_time(text: str, option: str, now: datetime) -> datetime:
    """RFC 3339 (``2026-12-05T10:00:00Z``) or an age before now (``90m``, ``24h``, ``7d``)."""
    relative = _RELATIVE.fullmatch(text.strip())
    if relative:
        return now - timedelta(**{_UNITS[relative.group(2)]: int(relative.group(1))})
    try:
        return parse_instant(text, option)
    except ValueError as error:
        raise UsageError(f"{error} (or an age such as 24h)") from error


@dataclass(frozen=True)
class ReplayRequest:
    database_url: str
    candidate: Path
    opener: InputOpener
    since: datetime
    until: datetime
    tenant: str | None
    threshold: Threshold
    opa: str
    batch_size: int = 100
    parallel: int = 2


class _Replayer:
    """Opens inputs and asks the candidate in batches, keeping up to ``parallel`` batches in flight: the next batch
    is opened (and the next rows read) while OPA evaluates the previous ones, so neither side waits for the other."""

    def __init__(self, engine: CandidateEngine, request: ReplayRequest, report: ImpactReport) -> None:
        self._engine = engine
        self._request = request
        self._report = report
        self._slots = asyncio.Semaphore(request.parallel)
        self._in_flight: set[asyncio.Task[None]] = set()
        self._opened: list[tuple[LoggedDecision, Any]] = []
        self._failure: BaseException | None = None

    async def add(self, rows: Sequence[LoggedRow]) -> None:
        for row in rows:
            if row.sealed_input is None:
                self._report.skip("no_sealed_input")
                continue
            try:
                document = self._request.opener.open(row.sealed_input, row.decision.decision_id)
            except SealedInputError:
                self._report.skip("sealed_input_unopenable")
                continue
            self._opened.append((row.decision, document))
            if len(self._opened) >= self._request.batch_size:
                await self._send()

    async def finish(self) -> None:
        if self._opened:
            await self._send()
        await asyncio.gather(*self._in_flight)
        self._raise_failure()

    def _raise_failure(self) -> None:
        # A batch that failed unexpectedly must stop the run: its decisions would be missing from every count.
        if self._failure is not None:
            raise self._failure

    def _done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._failure = task.exception()

    async def _send(self) -> None:
        self._raise_failure()
        part, self._opened = self._opened, []
        await self._slots.acquire()
        task = asyncio.create_task(self._ask(part))
        self._in_flight.add(task)
        task.add_done_callback(self._done)

    async def _ask(self, part: list[tuple[LoggedDecision, Any]]) -> None:
        try:
            verdicts = await self._engine.decide([document for _, document in part])
        finally:
            self._slots.release()
        for (logged, _), verdict in zip(part, verdicts, strict=True):
            self._report.add(logged, verdict)


async def replay(request: ReplayRequest) -> dict[str, Any]:
    report = ImpactReport()
    started = time.perf_counter()
    async with candidate_engine(request.candidate, opa=request.opa) as engine:
        revision = await engine.revision()
        replayer = _Replayer(engine, request, report)
        conn = await asyncpg.connect(request.database_url)
        try:
            async with conn.transaction(readonly=True):
                async for rows in logged_decisions(conn, SCHEMA, request.since, request.until, request.tenant):
                    await replayer.add(rows)
            await replayer.finish()
        finally:
            await conn.close()
    elapsed = time.perf_counter() - started
    failures = report.exceeds(request.threshold)
    unopenable = report.skipped.get("sealed_input_unopenable", 0)
    if request.threshold.active and unopenable:
        failures.append(f"{unopenable} sealed inputs do not open with key {request.opener.key_id}")
    return {
        "since": request.since.isoformat(), "until": request.until.isoformat(), "tenant": request.tenant,
        "candidate": str(request.candidate), "candidate_revision": revision, "key_id": request.opener.key_id,
        **report.as_json(),
        "elapsed_s": round(elapsed, 3),
        "replayed_per_s": round(report.replayed / elapsed, 1) if elapsed > 0 else 0.0,
        "threshold": {"max_changes": request.threshold.max_changes,
                      "max_change_ratio": request.threshold.max_ratio} if request.threshold.active else None,
        "exceeded": failures,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", required=True, help="start of the range (RFC 3339, or an age such as 24h)")
    parser.add_argument("--until", help="end of the range, exclusive (default: now)")
    parser.add_argument("--candidate", required=True, type=Path, help="policy directory or bundle (.tar.gz)")
    parser.add_argument("--tenant", help="only this tenant's decisions")
    parser.add_argument("--max-changes", type=int, help="CI mode: fail when more decisions change result")
    parser.add_argument("--max-change-ratio", type=float, help="CI mode: fail when a larger share changes result")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--key", type=Path, help=f"the replay key's private half (default ${KEY_VARIABLE})")
    parser.add_argument("--database-url", default=os.environ.get("IG_DATABASE_URL"),
                        help="the decision log's database (default $IG_DATABASE_URL)")
    parser.add_argument("--opa", help="the opa binary (default: opa on PATH, else ig-infra's)")
    parser.add_argument("--batch-size", type=int, default=100, help="decisions per candidate round trip")
    parser.add_argument("--parallel", type=int, default=2, help="candidate round trips in flight")


def request_from(args: argparse.Namespace, now: datetime) -> ReplayRequest:
    key_path = args.key or (Path(os.environ[KEY_VARIABLE]) if os.environ.get(KEY_VARIABLE) else None)
    if key_path is None:
        raise UsageError(f"no replay key: pass --key or set {KEY_VARIABLE}")
    try:
        opener = load_opener(key_path)
    except ProtectionKeyError as error:
        raise UsageError(f"{'--key' if args.key else KEY_VARIABLE}: {error}") from error
    if not args.database_url:
        raise UsageError("no database: pass --database-url or set IG_DATABASE_URL")
    since = parse_time(args.since, "--since", now)
    until = parse_time(args.until, "--until", now) if args.until else now
    if until <= since:
        raise UsageError(f"--until ({until.isoformat()}) must be after --since ({since.isoformat()})")
    if args.max_changes is not None and args.max_changes < 0:
        raise UsageError("--max-changes must be 0 or more")
    if args.max_change_ratio is not None and not 0 <= args.max_change_ratio <= 1:
        raise UsageError("--max-change-ratio must be between 0 and 1")
    if args.batch_size < 1 or args.parallel < 1:
        raise UsageError("--batch-size and --parallel must be 1 or more")
    return ReplayRequest(
        database_url=args.database_url, candidate=args.candidate, opener=opener, since=since, until=until,
        tenant=args.tenant, threshold=Threshold(args.max_changes, args.max_change_ratio), opa=find_opa(args.opa),
        batch_size=args.batch_size, parallel=args.parallel,
    )


def run(args: argparse.Namespace) -> int:
    try:
        request = request_from(args, datetime.now(UTC))
        result = asyncio.run(replay(request))
    except (UsageError, CandidateError) as error:
        print(f"ig-policy replay: {error}", file=sys.stderr)
        return EXIT_USAGE
    print(json.dumps(result, indent=2) if args.json else render_text(result))
    for reason in result["exceeded"]:
        print(f"ig-policy replay: FAILED: {reason}", file=sys.stderr)
    return EXIT_EXCEEDED if result["exceeded"] else 0
