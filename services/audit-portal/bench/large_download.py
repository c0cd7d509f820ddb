"""The large-download phase of ``make bench-portal``: one artifact of BENCH_DOWNLOAD_BYTES (1 GiB) registered in its
own release, then downloaded whole, one at a time, through the portal (a signed link, the zip watermark streamed)
and by the evidence service's raw ``GetArtifact`` (as the release job), alternating, BENCH_DOWNLOAD_ROUNDS (2)
times each in the same run on the same stack. Goal: the portal at >= 80 % of the raw throughput (medians).

Also prints the CPU each process spent per GiB (portal, evidence service, this client), so a result on a busy
shared machine can be read against how much work each byte cost.

Alone, on a stack of its own (after ``uv run ig-infra up postgres kafka dex``):
``uv run python services/audit-portal/bench/large_download.py``; writes $ARTIFACTS/bench/portal-large-download.json.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from ig.evidence.v1 import evidence_pb2, evidence_pb2_grpc
from ig_common.grpc_client import aio_channel_as
from ig_infra.process import process_cpu_seconds

SIZE = int(os.environ.get("BENCH_DOWNLOAD_BYTES", str(1 << 30)))
ROUNDS = int(os.environ.get("BENCH_DOWNLOAD_ROUNDS", "2"))
RELEASE = "v9.0.0-bench-large"
NAME = "large-trace.bin"
GIB = 1 << 30


def write_large(path: Path) -> None:
    """A 4 KiB random block repeated: the bundle's gzip finds it fast; both paths stream every byte anyway."""
    block = os.urandom(4096) * 256
    with open(path, "wb") as out:
        for _ in range(SIZE // len(block)):
            out.write(block)
        out.write(block[: SIZE % len(block)])


async def raw_download(target: str, artifact_id: str) -> int:
    async with aio_channel_as("release", target) as channel:
        stub = evidence_pb2_grpc.EvidenceServiceStub(channel)
        size = 0
        async for part in stub.GetArtifact(evidence_pb2.GetArtifactRequest(artifact_id=artifact_id, tenant="alpha"),
                                           timeout=1800):
            size += len(part.chunk)
        return size


async def portal_download(base: str, token: str, artifact_id: str) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(base_url=base, headers=headers,
                                     timeout=aiohttp.ClientTimeout(total=1800)) as http:
        async with http.get(f"/audit/download/{artifact_id}") as answer:
            answer.raise_for_status()
            link = (await answer.json())["url"]
        size = 0
        async with http.get(link) as answer:
            answer.raise_for_status()
            async for chunk in answer.content.iter_any():
                size += len(chunk)
        return size


def own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def timed(pids: dict[str, int], download: Any) -> dict[str, Any]:
    before = {p: process_cpu_seconds(pid) for p, pid in pids.items()} | {"client": own_cpu_seconds()}
    started = time.perf_counter()
    size = asyncio.run(download)
    seconds = time.perf_counter() - started
    after = {p: process_cpu_seconds(pid) for p, pid in pids.items()} | {"client": own_cpu_seconds()}
    return {"bytes": size, "seconds": round(seconds, 2), "mib_per_second": round(size / seconds / 2**20, 1),
            "cpu_seconds_per_gib": {p: round((after[p] - before[p]) * GIB / size, 2) for p in after},
            "load_average_1m": round(os.getloadavg()[0], 1)}


def run(stack: Any, base: str, token: str, pids: dict[str, int]) -> dict[str, Any]:
    from portal_stack import build_and_register, write_inputs

    print(f"large download: registering a {SIZE / GIB:.2f} GiB artifact ...", flush=True)
    inputs = write_inputs(stack.work / "large-inputs")
    write_large(inputs / "chaos-report" / NAME)
    build_and_register(stack, RELEASE, inputs)
    (inputs / "chaos-report" / NAME).unlink()
    listed = httpx.get(f"{base}/audit/artifacts", params={"release": RELEASE},
                       headers={"Authorization": f"Bearer {token}"}, timeout=30).json()
    artifact = next(a for a in listed["artifacts"] if a["name"] == NAME)
    assert artifact["size"] == SIZE, artifact
    # The blob was just written: until the kernel has written it back, reading it competes with that writeback
    # (rounds measured then came out 2-3x slower for the evidence service, and so closer for the two paths). Both
    # paths are measured in the steady state: written back, and read once into the page cache.
    os.sync()
    warm_up = timed(pids, raw_download(stack.evidence_grpc, artifact["id"]))
    print(f"large download: warm-up read {warm_up['mib_per_second']} MiB/s (not counted)", flush=True)
    raw: list[dict[str, Any]] = []
    portal: list[dict[str, Any]] = []
    for round_ in range(ROUNDS):  # alternating, so a change in the machine's load falls on both alike
        print(f"large download: round {round_ + 1}/{ROUNDS}: raw GetArtifact, then the portal ...", flush=True)
        raw.append(timed(pids, raw_download(stack.evidence_grpc, artifact["id"])))
        portal.append(timed(pids, portal_download(base, token, artifact["id"])))
        assert raw[-1]["bytes"] == SIZE and portal[-1]["bytes"] > SIZE  # the zip adds its headers and the mark
    raw_rate = statistics.median(r["mib_per_second"] for r in raw)
    portal_rate = statistics.median(r["mib_per_second"] for r in portal)
    ratio = round(portal_rate / raw_rate, 3)
    return {"bytes": SIZE, "rounds": ROUNDS, "raw_get_artifact": raw, "portal": portal,
            "raw_mib_per_second_median": raw_rate, "portal_mib_per_second_median": portal_rate,
            "portal_to_raw": ratio, "goal": {"portal_to_raw_min": 0.8, "met": ratio >= 0.8}}


def print_result(result: dict[str, Any]) -> None:
    print(f"\nlarge download ({result['bytes'] / GIB:.2f} GiB, one at a time, {result['rounds']} rounds alternating)")
    for name in ("raw_get_artifact", "portal"):
        for n, r in enumerate(result[name], 1):
            cpu = ", ".join(f"{p} {s} s" for p, s in r["cpu_seconds_per_gib"].items())
            print(f"  {name:17} #{n}: {r['mib_per_second']:>7} MiB/s ({r['seconds']} s); CPU per GiB: {cpu}; "
                  f"load average {r['load_average_1m']}")
    print(f"  median: portal {result['portal_mib_per_second_median']} MiB/s vs raw "
          f"{result['raw_mib_per_second_median']} MiB/s = {100 * result['portal_to_raw']:.0f} % — goal >= 80 % "
          f"{'met' if result['goal']['met'] else 'not met'}")


def main() -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "testing"))
    from portal_stack import bench_stack, write_bench_result

    with bench_stack("ig_bench_download") as stack:
        # Limits raised as in make bench-portal: every download still takes from its buckets.
        portal, base = stack.portal("portal-bench-download", rate_requests_per_minute="100000000",
                                    rate_downloads_per_minute="100000000")
        pids = {"portal": portal.popen.pid, "evidence": stack.processes[0].popen.pid}
        result = run(stack, base, stack.token("alpha-auditor"), pids)
    write_bench_result("portal-large-download", result)
    print_result(result)


if __name__ == "__main__":
    main()
