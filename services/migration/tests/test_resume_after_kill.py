"""SIGKILL the orchestrator mid-backfill while a writer keeps writing; a new one resumes from the checkpoint and
green ends up exactly equal to blue: no batch skipped, none copied twice, no write lost."""

from __future__ import annotations

import asyncio
import itertools
import signal
import subprocess
import time
from pathlib import Path

import pytest
from ig_migration.store import target
from ig_migration.workload import Writer

from .helpers import CLI, cli_env, plan_yaml
from .test_orchestrator_pg import CHANGE, prepared

pytestmark = pytest.mark.integration


async def test_killed_orchestrator_resumes_from_checkpoint(fresh_dsn: str, tmp_path: Path) -> None:
    conn = await prepared(fresh_dsn, 30_000)
    plan = tmp_path / "plan.yaml"
    plan.write_text(plan_yaml(**{"batch.size": 1000}))
    writer = Writer(fresh_dsn, pause_seconds=0.003)
    writing = asyncio.create_task(writer.run())
    # A pause after every batch makes the backfill slow enough to be killed in the middle of it.
    slow = cli_env(fresh_dsn, tmp_path, IG_BACKFILL_PAUSE_SECONDS="0.2")
    first = await asyncio.create_subprocess_exec(*CLI, "run", "--plan", str(plan), "--until", "shadow-read",
                                                 env=slow, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    batches_before = 0
    while time.monotonic() < deadline and first.returncode is None:
        batches_before = await conn.fetchval(
            "SELECT coalesce((SELECT batches FROM migration.checkpoints WHERE change = $1), 0)", CHANGE)
        if batches_before >= 5:
            break
        await asyncio.sleep(0.1)
    assert first.returncode is None, "the orchestrator ended before it could be killed"
    first.send_signal(signal.SIGKILL)  # a real kill: no handler, no cleanup, connections cut by the kernel
    assert await asyncio.wait_for(first.wait(), timeout=30) == -signal.SIGKILL
    checkpoint = await conn.fetchrow("SELECT last_key, end_key, done, batches FROM migration.checkpoints")
    assert checkpoint["batches"] >= 5 and checkpoint["last_key"] < checkpoint["end_key"], dict(checkpoint)

    second = await asyncio.to_thread(subprocess.run, [*CLI, "run", CHANGE, "--until", "shadow-read"],
                                     env=cli_env(fresh_dsn, tmp_path), capture_output=True, text=True,
                                     timeout=300, check=False)
    assert second.returncode == 0, second.stderr[-3000:]
    assert '"phase": "shadow-read"' in second.stdout

    batches = await conn.fetch("SELECT batch_no, lo_key, hi_key, rows FROM migration.batches ORDER BY batch_no")
    # Contiguous key ranges: the batch after the restart starts exactly where the last committed one ended.
    assert all(a["hi_key"] == b["lo_key"] for a, b in itertools.pairwise(batches))
    resumed = next(b for b in batches if b["batch_no"] == checkpoint["batches"] + 1)
    assert resumed["lo_key"] == checkpoint["last_key"]
    assert batches[-1]["hi_key"] == checkpoint["end_key"]
    shadow = await conn.fetchval("SELECT body->>'mismatches' FROM migration.results WHERE kind = 'shadow-read'")
    assert shadow == "0"

    writer.stop.set()
    await writing
    assert writer.writes > 100 and writer.errors == 0, writer.last_error
    columns = await target.columns_of(conn, "public.assets")
    blue, green = await target.fingerprints(conn, ["public.assets", "public.assets_v3"], columns, "id")
    assert blue == green and blue.rows == await conn.fetchval("SELECT count(*) FROM app.assets")
    assert await conn.fetchval("SELECT count(*) - count(DISTINCT id) FROM public.assets_v3") == 0
    await conn.close()
