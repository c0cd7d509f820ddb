"""A lean OFREP load generator (aiohttp, one process) with two stated client models.

* open loop (the goal's model): ``clients`` OpenFeature SDK clients, each evaluating a flag at Poisson-distributed
  moments at ``rate_per_client`` per second, one request at a time on its own keep-alive connection. A request
  due while the client's previous one is still out waits for it, and its latency counts from the moment it was
  due (no coordinated omission); ``service`` latency counts from the moment it was sent.
* closed loop (saturation): ``clients`` clients each sending the next request the moment the last answer arrives.
  Throughput is the figure; latency is then ``clients / throughput`` by Little's law, whatever the server does.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

BODY = b'{"context": {"targetingKey": "user-1"}}'
HEADERS = {"Content-Type": "application/json"}


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a process: its own CPU, whatever else the machine is doing."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    latencies: list[float] = field(default_factory=list)
    service: list[float] = field(default_factory=list)
    failures: int = 0
    wall: float = 0.0
    server_cpu: float = 0.0
    client_cpu: float = 0.0

    def summary(self, idle_cpu_per_second: float = 0.0) -> dict[str, float | int]:
        """``idle_cpu_per_second``: the server's own background CPU (outbox relay, flag refresh, ticks) when idle;
        ``server_cpu_ms_per_request`` counts it in, ``..._net`` takes it out."""
        count = len(self.latencies)
        net = self.server_cpu - idle_cpu_per_second * self.wall
        figures: dict[str, float | int] = {
            "requests": count, "failures": self.failures, "seconds": round(self.wall, 3),
            "throughput_rps": count / self.wall if self.wall else 0.0,
            "server_cpu_ms_per_request": self.server_cpu * 1000 / max(1, count),
            "server_cpu_ms_per_request_net": max(0.0, net) * 1000 / max(1, count),
            "client_cpu_ms_per_request": self.client_cpu * 1000 / max(1, count)}
        for name, values in (("", self.latencies), ("service_", self.service)):
            ordered = sorted(values)
            for q in (50, 95, 99):
                figures[f"{name}p{q}_ms"] = ordered[min(count - 1, int(count * q / 100))] * 1000 if count else 0.0
        return figures


async def _post(session: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with session.post(url, data=BODY, headers=HEADERS) as response:
            await response.read()
            return response.status == 200
    except aiohttp.ClientError:
        return False


async def open_loop(url: str, pid: int, *, clients: int, rate_per_client: float, seconds: float,
                    seed: int = 6) -> Run:
    run = Run()
    rng = random.Random(seed)
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        await _warm_up(session, url, clients)
        started = time.perf_counter()
        end = started + seconds

        async def client() -> None:
            due = started + rng.expovariate(rate_per_client)
            while due < end:
                now = time.perf_counter()
                if due > now:
                    await asyncio.sleep(due - now)
                sent = time.perf_counter()
                ok = await _post(session, url)
                done = time.perf_counter()
                if ok:
                    run.latencies.append(done - due)
                    run.service.append(done - sent)
                else:
                    run.failures += 1
                due += rng.expovariate(rate_per_client)

        await _timed(run, pid, [client() for _ in range(clients)])
    return run


async def closed_loop(url: str, pid: int, *, clients: int, requests_per_client: int) -> Run:
    run = Run()
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        await _warm_up(session, url, clients)

        async def client() -> None:
            for _ in range(requests_per_client):
                sent = time.perf_counter()
                if await _post(session, url):
                    run.latencies.append(time.perf_counter() - sent)
                else:
                    run.failures += 1

        await _timed(run, pid, [client() for _ in range(clients)])
    run.service = run.latencies  # sent the moment it is due: both latencies are the same
    return run


async def _warm_up(session: aiohttp.ClientSession, url: str, clients: int) -> None:
    """Open every connection and load every code path before anything is measured."""
    await asyncio.gather(*(_post(session, url) for _ in range(clients)))


async def _timed(run: Run, pid: int, clients: list[Coroutine[object, object, None]]) -> None:
    server_before, client_before = process_cpu_seconds(pid), time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*clients)
    run.wall = time.perf_counter() - started
    run.server_cpu = process_cpu_seconds(pid) - server_before
    run.client_cpu = time.process_time() - client_before
