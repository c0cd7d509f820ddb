"""OFREP load with two stated client models, sent by tools/loadgen (Go) so the client's own cost stays out.

* open loop (the goal's model): ``clients`` OpenFeature SDK clients, each evaluating a flag at Poisson-distributed
  moments at ``rate_per_client`` per second, one request at a time on a keep-alive connection. A request due
  while the client's previous one is still out waits for it, and its latency counts from the moment it was due
  (no coordinated omission); ``service`` latency counts from the moment it was sent.
* closed loop (saturation): ``clients`` clients each sending the next request the moment the last answer arrives.
  Throughput is the figure; latency is then ``clients / throughput`` by Little's law, whatever the server does.

Until 2026-11-29 these clients were aiohttp coroutines in one Python process: on 2 cores that client cost ~1-2 ms
of CPU per request and its event loop added its own delay to every latency (its p95 read 5.06 ms while the
server's was 3.7 ms).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ig_infra.loadgen import LoadResult, drive, http_call, loadgen_binary
from ig_infra.process import process_cpu_seconds

BODY = {"context": {"targetingKey": "user-1"}}
WARMUP_PER_CLIENT = 2


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


async def open_loop(url: str, pid: int, *, clients: int, rate_per_client: float, seconds: float) -> Run:
    # Poisson moments over ``seconds``: the count is a bound well above what the schedule can hold.
    return await _run(url, pid, clients=clients, count=2 * round(clients * rate_per_client * seconds) + 100 * clients,
                      rate=clients * rate_per_client, seconds=seconds)


async def closed_loop(url: str, pid: int, *, clients: int, requests_per_client: int) -> Run:
    return await _run(url, pid, clients=clients, count=clients * requests_per_client, rate=0.0, seconds=0.0)


async def _run(url: str, pid: int, *, clients: int, count: int, rate: float, seconds: float) -> Run:
    server_before = process_cpu_seconds(pid)
    result: LoadResult = await drive(loadgen_binary(), [http_call(url, BODY)], count=count, concurrency=clients,
                                     rate=rate, arrivals="poisson", duration_s=seconds,
                                     warmup=clients * WARMUP_PER_CLIENT)
    count = result.calls
    # The warm-up (every connection opened, every code path loaded) runs first in the same loadgen process; its
    # requests cost the server what the measured ones do, so the measured share of the server's CPU is pro rata.
    server_cpu = (process_cpu_seconds(pid) - server_before) * count / (count + clients * WARMUP_PER_CLIENT)
    return Run(latencies=[ms / 1000 for ms in result.latencies_ms],
               service=[ms / 1000 for ms in result.sent_latencies_ms],
               failures=count - result.outcomes.get("http:200", 0), wall=result.elapsed_s, server_cpu=server_cpu,
               client_cpu=result.cpu_s)
