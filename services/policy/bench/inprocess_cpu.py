"""CPU per decision of the in-process service alone: for A/B runs of a change to the decision path.

Starts a private OPA and one service with IG_POLICY_WASM_BUNDLE (as `make bench-policy`'s in-process instance:
decision log on, WAL fsync on, the test clock, the golden approver), checks its answers against raw OPA, warms it
up, then drives Decide from tools/loadgen in closed loop (``--concurrency`` callers, mTLS as the gateway) for
``--rounds`` rounds of ``--decisions`` and prints, per round, decisions/s and the CPU milliseconds per decision of
the service process, its decision-log writer and the load generator. On a shared machine compare the CPU per
decision of runs made back to back, not the rates.

    uv run python services/policy/bench/inprocess_cpu.py --decisions 3000 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from pathlib import Path

import bench_policy as bench  # beside this script
from ig_common.tls import workload_directory
from ig_infra.components import Identities, Kafka, Postgres
from ig_infra.loadgen import LoadResult, drive, grpc_call, loadgen_binary
from ig_infra.paths import Paths
from ig_infra.process import child_pids, process_cpu_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=3000, help="per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    paths = Paths.from_environment()
    postgres, kafka, identities = Postgres(paths), Kafka(paths), Identities(paths)
    identities.start()
    os.environ.update(identities.env())
    database = bench.fresh_database(postgres)
    try:
        with bench.opa_server() as opa, tempfile.TemporaryDirectory() as scratch:
            env = {**identities.env(), **kafka.env(), **postgres.service_env("policy", database), **opa.env(),
                   "IG_LOG_LEVEL": "WARNING"}
            bench.set_test_clock(Path(scratch) / "clock", bench.BENCH_NOW)
            settings = {"test_clock_file": str(Path(scratch) / "clock"),
                        "breakglass_approvers_path": str(bench.write_approvers_file(Path(scratch) / "approvers"))}
            with bench.inprocess_service(True, env, Path(scratch), settings) as service:
                assert service is not None
                mix = bench.workload()
                calls = [grpc_call(bench.DECIDE, request.SerializeToString()) for _, request in mix]

                async def run(count: int) -> LoadResult:
                    return await drive(loadgen_binary(), calls, count=count, concurrency=args.concurrency, rate=0.0,
                                       grpc_target=service.grpc_address, match=bench.FAIL_CLOSED,
                                       warmup=args.concurrency, tls_dir=workload_directory(bench.CLIENT_IDENTITY))

                differing = asyncio.run(bench.answers_differing(opa, service.grpc_address, mix))
                print(f"answers differing from raw OPA: {differing} of {len(mix)}")
                asyncio.run(run(bench.WARMUP * 2))
                pid = service.process.pid
                (writer,) = child_pids(pid)
                for number in range(args.rounds):
                    before = process_cpu_seconds(pid), process_cpu_seconds(writer)
                    result = asyncio.run(run(args.decisions))
                    service_s = process_cpu_seconds(pid) - before[0]
                    writer_s = process_cpu_seconds(writer) - before[1]
                    per = 1000 / args.decisions
                    print(f"round {number + 1}: {args.decisions / result.elapsed_s:.0f} decisions/s, CPU ms per "
                          f"decision: service {service_s * per:.3f}, writer {writer_s * per:.3f}, client "
                          f"{result.cpu_s * per:.3f}; failed closed {result.matched}, outcomes {result.outcomes}, "
                          f"load {os.getloadavg()[0]:.1f}", flush=True)
    finally:
        postgres.admin_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)', transaction=False)


if __name__ == "__main__":
    main()
