"""make bench-bridge: what the port bridge (ig_infra.port_bridge) costs a connection, against the same server reached
directly, in one run.

`make up` runs each region in its own network namespace, and every client on the host (tests, the release flow, a
browser on the portal) reaches a service through the bridge: one Python process copying bytes between a host socket
and a socket inside the namespace. This measures that hop:

- the same server (an echo / send-N-bytes server, this file's ``--serve`` mode) runs twice: on the host loopback
  (the baseline, reached directly) and inside a scratch namespace with only its loopback (reached through a real
  bridge process with one route, as `make up` starts it);
- round trip: one connection, 64-byte ping-pong, p50 / p95 / p99;
- concurrent: 32 connections ping-ponging at once, round trips/s (gRPC channels and HTTP clients in flight together);
- bulk: one connection receiving BENCH_BRIDGE_BYTES (default 1 GiB), MiB/s (a large download);
- the bridge process's CPU per GiB and per 10,000 round trips.
Modes alternate in rounds, so load from anything else on the machine falls on all alike. ``--compare-with FILE``
adds a third mode, another version of the bridge run as a script beside the shipped one (e.g. ``git show
<rev>:tools/infra/src/ig_infra/port_bridge.py > /tmp/bridge-before.py``), for a before/after in one run.

    uv run python tools/infra/bench/bench_port_bridge.py [--rounds 3] [--compare-with FILE]
        [--out artifacts/bench/port-bridge.json]
Needs root (a network namespace).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ig_infra.port_bridge import Route, write_routes
from ig_infra.process import process_cpu_seconds

PING = b"p" * 64
BULK = int(os.environ.get("BENCH_BRIDGE_BYTES", str(1 << 30)))
GIB = 1 << 30
HOST = "127.0.0.1"


# --- the server (run as `bench_port_bridge.py --serve PORT`, in the host or inside the namespace) ---------------

async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """First line ``echo``: echo everything until EOF. ``send N``: send N bytes, then close."""
    command = (await reader.readline()).split()
    if command[:1] == [b"send"]:
        block = b"x" * (1 << 20)
        left = int(command[1])
        while left:
            writer.write(block[:min(left, len(block))])
            left -= min(left, len(block))
            await writer.drain()
    else:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


async def _serve(port: int) -> None:
    server = await asyncio.start_server(_handle, HOST, port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


# --- the client ---------------------------------------------------------------------------------------------------

def _connect(port: int) -> socket.socket:
    sock = socket.create_connection((HOST, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def round_trips_ms(port: int, count: int) -> list[float]:
    with _connect(port) as sock:
        sock.sendall(b"echo\n")
        timings = []
        for _ in range(count):
            started = time.perf_counter()
            sock.sendall(PING)
            got = 0
            while got < len(PING):
                got += len(sock.recv(len(PING) - got))
            timings.append((time.perf_counter() - started) * 1000)
        return timings


async def _concurrent(port: int, connections: int, seconds: float) -> int:
    done = 0
    deadline = time.monotonic() + seconds

    async def one() -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(b"echo\n")
        while time.monotonic() < deadline:
            writer.write(PING)
            await reader.readexactly(len(PING))
            done += 1
        writer.close()

    await asyncio.gather(*(one() for _ in range(connections)))
    return done


def bulk_seconds(port: int, size: int) -> float:
    buffer = bytearray(1 << 20)
    with _connect(port) as sock:
        started = time.perf_counter()
        sock.sendall(f"send {size}\n".encode())
        got = 0
        while n := sock.recv_into(buffer):
            got += n
        assert got == size, (got, size)
        return time.perf_counter() - started


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {f"p{p}_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))], 4) for p in (50, 95, 99)}


# --- the setup ----------------------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _started(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log.open("wb"))
    assert process.stdout is not None
    while line := process.stdout.readline():
        if line.startswith(b"ready"):
            return process
    raise RuntimeError(f"{argv} did not start: {log.read_text()[-2000:]}")


@contextmanager
def namespace() -> Iterator[str]:
    name = f"igbb-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


@contextmanager
def stack(scratch: Path, compare_with: Path | None) -> Iterator[dict[str, tuple[int, int | None]]]:
    """A direct server on the host, a server inside a namespace and a bridge to it (two with ``compare_with``):
    each mode's port and the pid of its bridge (None: no bridge)."""
    me = [sys.executable, str(Path(__file__).resolve())]
    direct_port, inner_port = _free_port(), _free_port()
    bridges = {"bridged": [sys.executable, "-m", "ig_infra.port_bridge"]}
    if compare_with is not None:
        bridges["compared"] = [sys.executable, str(compare_with)]
    processes: list[subprocess.Popen[bytes]] = []
    with namespace() as netns:
        try:
            processes.append(_started([*me, "--serve", str(direct_port)], scratch / "direct.log"))
            processes.append(_started(["ip", "netns", "exec", netns, *me, "--serve", str(inner_port)],
                                      scratch / "inner.log"))
            modes: dict[str, tuple[int, int | None]] = {"direct": (direct_port, None)}
            for mode, argv in bridges.items():
                port, routes = _free_port(), scratch / f"{mode}-routes.json"
                write_routes(routes, [Route(None, HOST, port, netns, HOST, inner_port, "bench")])
                bridge = _started([*argv, str(routes)], scratch / f"{mode}.log")
                processes.append(bridge)
                modes[mode] = (port, bridge.pid)
            yield modes
        finally:
            for process in processes:
                process.terminate()
                process.wait(timeout=10)


def measure(rounds: int, pings: int, connections: int, seconds: float, compare_with: Path | None
            ) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch, stack(Path(scratch), compare_with) as modes:
        samples: dict[str, dict[str, list[float]]] = {
            mode: {"rtt": [], "concurrent": [], "bulk": [], "cpu_per_gib_s": [], "cpu_per_10k_round_trips_s": []}
            for mode in modes}
        for port, _ in modes.values():  # warm every path up
            round_trips_ms(port, 200)
        for _ in range(rounds):
            for mode, (port, bridge) in modes.items():
                cpu = process_cpu_seconds(bridge) if bridge else 0.0
                samples[mode]["rtt"] += round_trips_ms(port, pings)
                trips = asyncio.run(_concurrent(port, connections, seconds))
                samples[mode]["concurrent"].append(trips / seconds)
                if bridge:
                    samples[mode]["cpu_per_10k_round_trips_s"].append(
                        (process_cpu_seconds(bridge) - cpu) * 10_000 / (pings + trips))
                    cpu = process_cpu_seconds(bridge)
                samples[mode]["bulk"].append(BULK / bulk_seconds(port, BULK) / 2**20)
                if bridge:
                    samples[mode]["cpu_per_gib_s"].append((process_cpu_seconds(bridge) - cpu) * GIB / BULK)
    result: dict[str, Any] = {}
    for mode, figures in samples.items():
        result[mode] = {"round_trip": percentiles(figures["rtt"]),
                        "concurrent_round_trips_per_s": round(statistics.median(figures["concurrent"])),
                        "bulk_mib_per_s": round(statistics.median(figures["bulk"]), 1)}
        if figures["cpu_per_gib_s"]:
            result[mode]["bridge_cpu"] = {name: round(statistics.median(figures[name]), 3)
                                          for name in ("cpu_per_gib_s", "cpu_per_10k_round_trips_s")}
    direct, bridged = result["direct"], result["bridged"]
    result["bridge_adds"] = {
        f"round_trip_{p}": round(bridged["round_trip"][p] - direct["round_trip"][p], 4) for p in direct["round_trip"]}
    result["bridged_share_of_direct"] = {
        "concurrent_round_trips": round(bridged["concurrent_round_trips_per_s"]
                                        / direct["concurrent_round_trips_per_s"], 3),
        "bulk": round(bridged["bulk_mib_per_s"] / direct["bulk_mib_per_s"], 3)}
    return result


def print_report(report: dict[str, Any]) -> None:
    print(f"port bridge bench: {report['rounds']} rounds, {report['pings_per_round']} pings, "
          f"{report['connections']} connections for {report['seconds_per_round']} s, {BULK / GIB:.2f} GiB bulk; "
          f"load {report['loadavg_before']} -> {report['loadavg_after']}")
    for mode in ("direct", "bridged", "compared"):
        if mode not in report:
            continue
        row = report[mode]
        rtt = row["round_trip"]
        cpu = row.get("bridge_cpu")
        print(f"  {mode:8} round trip p50 {rtt['p50_ms']:.3f} / p95 {rtt['p95_ms']:.3f} / p99 {rtt['p99_ms']:.3f} ms; "
              f"{row['concurrent_round_trips_per_s']:,} round trips/s over {report['connections']} connections; "
              f"bulk {row['bulk_mib_per_s']:,} MiB/s"
              + (f"; bridge CPU {cpu['cpu_per_gib_s']:.2f} s per GiB, {cpu['cpu_per_10k_round_trips_s']:.2f} s per "
                 "10,000 round trips" if cpu else ""))
    adds, share = report["bridge_adds"], report["bridged_share_of_direct"]
    print(f"  the bridge adds p50 {adds['round_trip_p50_ms']:+.3f} / p95 {adds['round_trip_p95_ms']:+.3f} / "
          f"p99 {adds['round_trip_p99_ms']:+.3f} ms per round trip; keeps "
          f"{100 * share['concurrent_round_trips']:.0f} % of the concurrent round trips and "
          f"{100 * share['bulk']:.0f} % of the bulk throughput")
    if "compared" in report:
        print(f"  compared = {report['compared_with']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pings", type=int, default=3000, help="single-connection round trips per round")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=3.0, help="of concurrent ping-pong per round")
    parser.add_argument("--compare-with", type=Path, help="another version of the bridge, run as a script")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("ARTIFACTS", "artifacts")) / "bench"
                        / "port-bridge.json")
    args = parser.parse_args()
    if args.serve is not None:
        asyncio.run(_serve(args.serve))
        return
    if os.geteuid() != 0:
        sys.exit("bench-bridge: a network namespace needs root")
    before = os.getloadavg()[0]
    report = {"benchmark": "port-bridge", "command": "make bench-bridge", "rounds": args.rounds,
              "pings_per_round": args.pings, "connections": args.connections, "seconds_per_round": args.seconds,
              "bulk_bytes": BULK, "loadavg_before": round(before, 2),
              **({"compared_with": str(args.compare_with)} if args.compare_with else {}),
              **measure(args.rounds, args.pings, args.connections, args.seconds, args.compare_with),
              "loadavg_after": round(os.getloadavg()[0], 2), "cpus": os.cpu_count()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_report(report)
    print(f"  written to {args.out}")


if __name__ == "__main__":
    main()
