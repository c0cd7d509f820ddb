"""make bench-replay: how fast `ig-policy replay` re-evaluates logged decisions (the issue asks 1,000,000).

1. A fresh database laid out like the suite's, the policy schema migrated.
2. A synthetic log of ``--decisions`` records made by the real encoder (build_log_record: keyed pseudonyms, the
   input sealed with HPKE to a new replay key, the default mask), COPYed in chunks: the golden inputs that the API
   accepts, each with its real answer from OPA at its own moment, repeated with a distinct actor id per record.
3. The replay itself (the same code as `ig-policy replay`): read the range through a cursor, open every input,
   ask a second OPA (the unchanged policies/rego, so every answer should equal the logged one) in batches.
Reports decisions re-evaluated per second, the CPU of this process (reading, opening, comparing) and of the
candidate OPA, the host's load average before and after (the machine is shared: figures are under that load), and
how many decisions changed (0 expected: a non-zero count means replay does not reproduce the logged answers).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import resource
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from ig_common.db import create_pool, prepare_service_schema
from ig_infra.components import Identities, Postgres
from ig_infra.paths import Paths
from ig_policy.api.translate import request_from_proto
from ig_policy.domain.impact import Threshold
from ig_policy.domain.masking import apply_masks, parse_mask_rules
from ig_policy.domain.model import Decision, rfc3339
from ig_policy.domain.record import build_log_record
from ig_policy.domain.validation import validate_request
from ig_policy.domain.verdict import verdict_from_engine
from ig_policy.replay import ReplayRequest, replay
from ig_policy.store import MIGRATIONS, SCHEMA
from ig_policy.testing import POLICIES, golden_cases, new_record_protection, opa_binary, opa_server, proto_from_input

CHUNK = 10_000
COLUMNS = ("decision_id", "ts", "result", "rule_id", "tenant", "action", "policy_revision", "record")


def templates() -> list[dict[str, Any]]:
    """Golden inputs the API accepts, each as the service would have judged it (context.time = its moment)."""
    found = []
    for case in golden_cases():
        message = proto_from_input(case.input)
        if message is None:
            continue
        request, errors = request_from_proto(message)
        if errors or validate_request(request) or request.context.time is None:
            continue
        found.append(request.to_policy_input(request.context.time))
    return found


def answers(inputs: list[dict[str, Any]]) -> list[Any]:
    with opa_server() as opa:
        reply = httpx.post(f"{opa.url}/v1/data/ig/ctx/decisions", json={"input": {"requests": inputs}},
                           headers=opa.headers, timeout=60)
        reply.raise_for_status()
        return [verdict_from_engine({"result": document}) for document in reply.json()["result"]]


async def write_log(dsn: str, count: int, protection: Any) -> tuple[datetime, datetime, float]:
    inputs = templates()
    verdicts = answers(inputs)
    masks = parse_mask_rules(["/input/actor/id"])
    start = datetime.now(UTC) - timedelta(hours=1)
    started = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        for first in range(0, count, CHUNK):
            rows = []
            for index in range(first, min(first + CHUNK, count)):
                template = inputs[index % len(inputs)]
                document = copy.deepcopy(template)
                document["actor"]["id"] = f"u-{index:07d}"
                evaluated_at = start + timedelta(microseconds=index)
                decision = Decision(f"dec_{uuid.uuid4().hex}", verdicts[index % len(inputs)], "sha256:bench",
                                    evaluated_at, 0.5)
                record = apply_masks(build_log_record(document, decision, region="region-a", protection=protection),
                                     masks, protection.pseudonymize)
                rows.append((decision.decision_id, evaluated_at, decision.verdict.result.value.lower(),
                             decision.rule_id, record["tenant"], record["action"], decision.policy_revision,
                             json.dumps(record)))
            await conn.copy_records_to_table("decision_log", schema_name=SCHEMA, columns=COLUMNS, records=rows)
            print(f"  logged {min(first + CHUNK, count):,} / {count:,}", file=sys.stderr)
    finally:
        await conn.close()
    return start, start + timedelta(microseconds=count), time.perf_counter() - started


async def run(args: argparse.Namespace) -> dict[str, Any]:
    paths = Paths.from_environment()
    identities, postgres = Identities(paths), Postgres(paths)
    identities.start()
    os.environ.update(identities.env())
    name = f"ig_bench_replay_{uuid.uuid4().hex[:8]}"
    postgres.provision(name)
    try:
        dsn = postgres.service_dsn("policy", name)
        pool = await create_pool(dsn)
        await prepare_service_schema(pool, SCHEMA, MIGRATIONS, postgres.service_dsn("policy", name, migrator=True))
        await pool.close()
        protection, opener = new_record_protection()
        since, until, generation_s = await write_log(dsn, args.decisions, protection)
        load_before = os.getloadavg()
        cpu_before, children_before = time.process_time(), resource.getrusage(resource.RUSAGE_CHILDREN)
        report = await replay(ReplayRequest(
            database_url=dsn, candidate=POLICIES, opener=opener, since=since, until=until + timedelta(seconds=1),
            tenant=None, threshold=Threshold(), opa=opa_binary(), batch_size=args.batch_size,
            parallel=args.parallel))
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        replayer_cpu = time.process_time() - cpu_before
        opa_cpu = (children.ru_utime + children.ru_stime) - (children_before.ru_utime + children_before.ru_stime)
    finally:
        postgres.admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', transaction=False)
    replayed = report["replayed"]
    return {
        "benchmark": "policy-replay", "command": f"make bench-replay REPLAY_DECISIONS={args.decisions}",
        "at": rfc3339(datetime.now(UTC)), "logged_decisions": args.decisions, "replayed": replayed,
        "changed": report["changed"], "rule_only_changed": report["rule_only_changed"],
        "candidate_errors": report["candidate_errors"], "skipped": report["skipped"],
        "replay_seconds": report["elapsed_s"], "replayed_per_s": report["replayed_per_s"],
        "batch_size": args.batch_size, "parallel": args.parallel,
        "replayer_cpu_ms_per_decision": round(replayer_cpu * 1000 / max(replayed, 1), 4),
        "candidate_opa_cpu_ms_per_decision": round(opa_cpu * 1000 / max(replayed, 1), 4),
        "log_generation_seconds": round(generation_s, 1),
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()], "cpus": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="ig-policy replay speed over a synthetic decision log")
    parser.add_argument("--decisions", type=int, default=100_000, help="records in the log (the issue: 1,000,000)")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("artifacts/bench/policy-replay.json"))
    args = parser.parse_args()
    result = asyncio.run(run(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if result["changed"] or result["candidate_errors"]:
        sys.exit("replay did not reproduce the logged answers")


if __name__ == "__main__":
    main()
