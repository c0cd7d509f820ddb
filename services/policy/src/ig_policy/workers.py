"""Several worker processes on the service's ports (``IG_POLICY_WORKERS`` > 1), and the supervisor that runs them.

A service process decides on one Python thread, and at saturation that thread is what limits ``Decide`` (README,
"Several worker processes"). Each worker here is a whole service process (``python -m ig_policy.app`` with
``IG_POLICY_WORKER_INDEX``): its own event loop, engine, WAL directory (``<IG_DECISION_LOG_WAL_DIR>/worker-<i>``)
and decision-log writer, so the durable hand-over and its crash guarantees are exactly the one-process ones, per
worker. The gRPC, AuthZEN and forward-auth listeners share their ports (SO_REUSEPORT): the kernel spreads
*connections* over the workers, so a caller's one connection reaches one worker (a gateway opens several).

The supervisor (this module, the process the platform starts) serves nothing but ``IG_HTTP_PORT``:
- ``/healthz`` is ready only when every worker is (each worker's own probe: database reachable, ports served);
- ``/metrics`` is every worker's metrics with a ``worker`` label (each worker serves them on a loopback port of
  its own), plus ``ig_policy_worker_pid{worker}``: one scrape target per pod, as with one process. Chosen over
  prometheus_client's multiprocess mode, which cannot carry the writers' mirrored gauges nor the process metrics.
- A worker that exits stops the service (fail closed), status 1: the platform restarts the whole service, whose
  workers replay their WALs (the tested restart path). Restarting one worker in place was not chosen: a crash
  loop would hide behind a service that still looks healthy at reduced capacity.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import sys
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import structlog
from ig_common.http_server import build_http_app, serve_http
from ig_common.lifecycle import stop_on_signals
from ig_common.logging import configure_logging
from ig_common.ports import free_port
from prometheus_client import GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR, REGISTRY, Gauge, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from ig_policy.settings import Settings
from ig_policy.store.wal import unacknowledged_bytes

log = structlog.get_logger(__name__)

WORKER_PID = Gauge("ig_policy_worker_pid", "Process id of each worker process serving the ports", ["worker"])
_STOP_TIMEOUT_S = 60.0
_PR_SET_PDEATHSIG = 1


class StrandedWal(RuntimeError):
    """A WAL directory this worker count will not read still holds decisions not in the decision log."""


def stranded_wals(settings: Settings) -> Iterator[tuple[str, int]]:
    """WAL directories of another worker count (the base one of a single process, ``worker-<i>`` beyond this
    count) that hold decisions not yet acknowledged: no writer of this configuration would ever read them."""
    base = settings.wal_base
    used = {base} if settings.policy_workers == 1 else {base / f"worker-{i}" for i in range(settings.policy_workers)}
    candidates = [base] + (sorted(base.glob("worker-*")) if base.is_dir() else [])
    for directory in candidates:
        if directory not in used and directory.is_dir():
            pending = unacknowledged_bytes(directory)
            if pending:
                yield str(directory), pending


def check_wal_layout(settings: Settings) -> None:
    """Stop start-up naming IG_POLICY_WORKERS when a changed worker count would strand logged decisions."""
    stranded = list(stranded_wals(settings))
    if stranded:
        where = ", ".join(f"{directory} ({pending} bytes)" for directory, pending in stranded)
        print(f"invalid setting IG_POLICY_WORKERS: {settings.policy_workers} would leave decisions not yet in the "
              f"decision log in {where}: start with the worker count that wrote them until they are written",
              file=sys.stderr)
        raise SystemExit(2)


def ensure_ports_free(host: str, ports: Iterable[int]) -> None:
    """The workers bind with SO_REUSEPORT, which would silently share a port with another service of ours left
    running: bind each port plainly once first, so a taken one stops start-up as it does for one process."""
    for port in ports:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
            try:
                sock.bind((host, port))
            except OSError as error:
                raise OSError(f"cannot serve on {host}:{port}: already in use? ({error})") from error


def _die_with_parent() -> None:
    # A SIGKILLed supervisor must not leave workers serving its ports: the kernel sends them SIGTERM.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Worker:
    index: int
    metrics_url: str
    process: asyncio.subprocess.Process

    def ready(self) -> bool:
        if self.process.returncode is not None:
            return False
        with contextlib.suppress(OSError), \
                urllib.request.urlopen(self.metrics_url.replace("/metrics", "/healthz"), timeout=2) as answer:
            return bool(answer.status == 200)
        return False


async def start_worker(index: int, settings: Settings, probe_host: str) -> Worker:
    port = free_port()
    env = {name: value for name, value in os.environ.items() if name != "IG_HEALTH_PORT"}
    env.update({"IG_POLICY_WORKER_INDEX": str(index), "IG_POLICY_WORKERS": str(settings.policy_workers),
                "IG_HTTP_PORT": str(port)})
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "ig_policy.app", env=env,
                                                   preexec_fn=_die_with_parent)
    WORKER_PID.labels(str(index)).set(process.pid)
    log.info("policy_worker_started", worker=index, pid=process.pid, metrics_port=port)
    return Worker(index, f"http://{probe_host}:{port}/metrics", process)


class WorkerMetrics(Collector):
    """Every worker's /metrics, each sample labelled with its worker, families of one name merged."""

    def __init__(self, workers: list[Worker]) -> None:
        self._workers = workers

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        for worker in self._workers:
            try:
                with urllib.request.urlopen(worker.metrics_url, timeout=2) as answer:
                    text = answer.read().decode()
            except OSError:
                continue  # its series are missing from this scrape; /healthz says it is not ready
            for family in text_string_to_metric_families(text):
                merged = families.setdefault(family.name, Metric(family.name, family.documentation, family.type,
                                                                 family.unit))
                merged.samples.extend(sample._replace(labels={**sample.labels, "worker": str(worker.index)})
                                      for sample in family.samples)
        yield from families.values()


async def supervise(settings: Settings) -> int:
    """Start the workers, serve probes and merged metrics, and stop everything when one worker exits or on SIGTERM;
    the exit status (0 after a requested stop, else the first worker's failure, at least 1)."""
    configure_logging(settings.service_name, settings.log_level, settings.region)
    stop = stop_on_signals()
    ensure_ports_free(settings.grpc_host, [settings.grpc_port])
    ensure_ports_free(settings.http_host, [settings.authzen_port, settings.forward_auth_port])
    probe_host = "127.0.0.1" if settings.http_host in ("0.0.0.0", "::", "") else settings.http_host
    workers = [await start_worker(i, settings, probe_host) for i in range(settings.policy_workers)]
    # The supervisor's own process metrics would collide with the workers' (same names): the workers' are the ones
    # that say where the CPU goes.
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        with contextlib.suppress(KeyError):
            REGISTRY.unregister(collector)
    REGISTRY.register(WorkerMetrics(workers))

    async def all_ready() -> bool:
        answers = await asyncio.gather(*(asyncio.to_thread(worker.ready) for worker in workers))
        return all(answers)

    app = build_http_app(settings.service_name, ready=all_ready)
    probes = asyncio.create_task(serve_http(app, settings.http_host, settings.http_port, stop))
    exits: dict[asyncio.Task[Any], Worker] = {asyncio.create_task(worker.process.wait()): worker for worker in workers}
    stopping = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({*exits, stopping, probes}, return_when=asyncio.FIRST_COMPLETED)
    status = 0
    if stopping not in done:
        failed = next((exits[task] for task in done if task in exits), None)
        code = failed.process.returncode if failed is not None else None
        status = code if code is not None and code > 0 else 1
        log.error("policy_worker_exited", worker=failed.index if failed else None, status=code,
                  note="stopping every worker: the service fails closed and its restart replays the WALs")
    stop.set()
    await _stop_workers(workers)
    with contextlib.suppress(Exception):
        await probes
    log.info("policy_workers_stopped", status=status)
    return status


async def _stop_workers(workers: list[Worker]) -> None:
    for worker in workers:
        if worker.process.returncode is None:
            worker.process.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            async with asyncio.timeout(_STOP_TIMEOUT_S):
                await worker.process.wait()
        except TimeoutError:
            log.error("policy_worker_slow_to_stop", worker=worker.index, timeout_s=_STOP_TIMEOUT_S)
            worker.process.kill()
            await worker.process.wait()
