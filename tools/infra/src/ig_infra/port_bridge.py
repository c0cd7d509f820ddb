"""Forward TCP ports between network namespaces: the host's 127.0.0.1:<port> to a region's listener, and a region's
127.0.0.1:<port> to a shared component on the host (ig_infra.suite_network).

One process for the whole suite, started on the host. Each route's listening socket is created inside the
namespace it listens in, each connection's upstream socket inside the namespace it dials (``ig_infra.netns``);
bytes are copied as they are, so TLS stays end to end between client and server and the certificates' 127.0.0.1
still matches. When the upstream refuses, the client's connection is closed at once: a health check through the
bridge sees a dead service as dead.

    python -m ig_infra.port_bridge ROUTES.json
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from ig_infra.netns import new_socket

CHUNK = 256 * 1024


@dataclass(frozen=True)
class Route:
    """Connections to ``listen_host:listen_port`` inside ``listen_netns`` go to ``connect_host:connect_port`` inside
    ``connect_netns`` (None: the host's own namespace)."""

    listen_netns: str | None
    listen_host: str
    listen_port: int
    connect_netns: str | None
    connect_host: str
    connect_port: int
    why: str = ""

    def describe(self) -> str:
        where = f"{self.listen_netns or 'host'} {self.listen_host}:{self.listen_port}"
        return f"{where} -> {self.connect_netns or 'host'} {self.connect_host}:{self.connect_port} ({self.why})"


def write_routes(path: Path, routes: list[Route]) -> None:
    path.write_text(json.dumps([route.__dict__ for route in routes], indent=1) + "\n")


def read_routes(path: Path) -> list[Route]:
    return [Route(**raw) for raw in json.loads(path.read_text())]


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy one direction until its end; pass the end on as a half-close, so the other direction (a response still
    on its way) keeps flowing until it ends too."""
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.transport.abort()  # a reset on one side is a reset on the other


async def _serve(route: Route, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
    upstream = new_socket(route.connect_netns)
    upstream.setblocking(False)
    upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(
            upstream, (route.connect_host, route.connect_port)), timeout=10)
    except (OSError, TimeoutError) as error:
        # In the log (port-bridge.log): "nothing answers behind this port" is the first thing to look for.
        print(f"refused: {route.describe()}: {error or 'timed out'}", flush=True)
        upstream.close()
        client_writer.close()
        return
    upstream_reader, upstream_writer = await asyncio.open_connection(sock=upstream, limit=CHUNK)
    sock = client_writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        await asyncio.gather(_pump(client_reader, upstream_writer), _pump(upstream_reader, client_writer))
    finally:
        for writer in (upstream_writer, client_writer):
            with contextlib.suppress(ConnectionError, OSError):
                writer.close()


async def serve(routes: list[Route]) -> None:
    servers = []
    for route in routes:
        listener = new_socket(route.listen_netns)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((route.listen_host, route.listen_port))

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, route: Route = route) -> None:
            await _serve(route, reader, writer)

        servers.append(await asyncio.start_server(handle, sock=listener, limit=CHUNK))
        print(f"forwarding {route.describe()}", flush=True)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    print(f"ready: {len(routes)} routes", flush=True)
    await stop.wait()
    for server in servers:
        server.close()


def main() -> None:
    asyncio.run(serve(read_routes(Path(sys.argv[1]))))


if __name__ == "__main__":
    main()
