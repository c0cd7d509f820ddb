"""Forward TCP ports between network namespaces: the host's 127.0.0.1:<port> to a region's listener, and a region's
127.0.0.1:<port> to a shared component on the host (ig_infra.suite_network).

One process for the whole suite, started on the host. Each route's listening socket is created inside the
namespace it listens in, each connection's upstream socket inside the namespace it dials (``ig_infra.netns``);
bytes are moved as they are (spliced in the kernel), so TLS stays end to end between client and server and the
certificates' 127.0.0.1 still matches. When the upstream refuses, the client's connection is closed at once: a
health check through the bridge sees a dead service as dead.

    python -m ig_infra.port_bridge ROUTES.json
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import signal
import socket
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

from ig_infra.netns import new_socket

# The most one splice(2) moves; each direction's pipe is sized to hold it (fs.pipe-max-size is 1 MiB by default).
CHUNK = 1 << 20
F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ, named in the fcntl module only from Python 3.12
SPLICE_FLAGS = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK


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


class _Splice:
    """One direction of a connection, moved socket -> pipe -> socket by splice(2): the bytes stay in the kernel and
    never pass through this process (tools/infra/bench/bench_port_bridge.py: copying them through Python buffers
    cost the bridge two and a half times the CPU per GiB). Driven by the event loop's readiness callbacks, as
    asyncio's own transports are: read while the sink keeps up, stop reading while it does not. The end is passed on
    as a half-close, so the other direction (a response still on its way) keeps flowing until it ends too; a failure
    (a reset) ends ``done`` with its error."""

    def __init__(self, source: socket.socket, sink: socket.socket) -> None:
        self.loop = asyncio.get_running_loop()
        self.source, self.sink = source.fileno(), sink
        self.drain, self.fill = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        with contextlib.suppress(OSError):  # a smaller pipe (64 KiB) only means more, smaller moves
            fcntl.fcntl(self.fill, F_SETPIPE_SZ, CHUNK)
        self.in_pipe = 0
        self.done: asyncio.Future[None] = self.loop.create_future()
        self.loop.add_reader(self.source, self._readable)

    def _readable(self) -> None:
        try:
            moved = os.splice(self.source, self.fill, CHUNK, flags=SPLICE_FLAGS)
        except BlockingIOError:
            return
        except OSError as error:
            self.close(error)
            return
        if moved == 0:
            try:
                self.sink.shutdown(socket.SHUT_WR)
            except OSError as error:
                self.close(error)
                return
            self.close()
            return
        self.in_pipe = moved
        self._flush()

    def _flush(self) -> None:
        while self.in_pipe:
            try:
                self.in_pipe -= os.splice(self.drain, self.sink.fileno(), self.in_pipe, flags=SPLICE_FLAGS)
            except BlockingIOError:  # the sink is full: wait until it drains, reading nothing meanwhile
                self.loop.remove_reader(self.source)
                self.loop.add_writer(self.sink.fileno(), self._writable)
                return
            except OSError as error:
                self.close(error)
                return

    def _writable(self) -> None:
        self._flush()
        if not self.in_pipe and not self.done.done():
            self.loop.remove_writer(self.sink.fileno())
            self.loop.add_reader(self.source, self._readable)

    def close(self, error: OSError | None = None) -> None:
        if self.done.done():
            return
        self.loop.remove_reader(self.source)
        self.loop.remove_writer(self.sink.fileno())
        os.close(self.drain)
        os.close(self.fill)
        if error is None:
            self.done.set_result(None)
        else:
            self.done.set_exception(error)


def _reset(sock: socket.socket) -> None:
    """Close with a reset: a reset on one side is a reset on the other."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


async def _serve(route: Route, client: socket.socket) -> None:
    upstream = new_socket(route.connect_netns)
    upstream.setblocking(False)
    try:
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(
            upstream, (route.connect_host, route.connect_port)), timeout=10)
    except (OSError, TimeoutError) as error:
        # In the log (port-bridge.log): "nothing answers behind this port" is the first thing to look for.
        print(f"refused: {route.describe()}: {error or 'timed out'}", flush=True)
        upstream.close()
        client.close()
        return
    for sock in (client, upstream):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    directions = [_Splice(client, upstream), _Splice(upstream, client)]
    failed = False
    try:
        for finished in asyncio.as_completed([direction.done for direction in directions]):
            await finished
    except OSError:
        failed = True
    finally:
        for direction in directions:  # before the sockets close: no callback may outlive its descriptor
            direction.close()
            direction.done.exception()  # both may have failed; one was awaited, the other is seen here
        for sock in (client, upstream):
            if failed:
                _reset(sock)
            else:
                sock.close()


async def _accept(route: Route, listener: socket.socket, connections: set[asyncio.Task[None]]) -> None:
    loop = asyncio.get_running_loop()
    while True:
        client, _ = await loop.sock_accept(listener)
        client.setblocking(False)
        connection = loop.create_task(_serve(route, client))
        connections.add(connection)  # held until done: the loop keeps only weak references to tasks
        connection.add_done_callback(connections.discard)


async def serve(routes: list[Route]) -> None:
    connections: set[asyncio.Task[None]] = set()
    acceptors = []
    for route in routes:
        listener = new_socket(route.listen_netns)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((route.listen_host, route.listen_port))
        listener.listen(128)
        listener.setblocking(False)
        acceptors.append(asyncio.ensure_future(_accept(route, listener, connections)))
        print(f"forwarding {route.describe()}", flush=True)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    print(f"ready: {len(routes)} routes", flush=True)
    await stop.wait()
    for acceptor in acceptors:
        acceptor.cancel()


def main() -> None:
    asyncio.run(serve(read_routes(Path(sys.argv[1]))))


if __name__ == "__main__":
    main()
