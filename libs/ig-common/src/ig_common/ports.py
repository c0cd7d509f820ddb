"""Loopback ports for the processes a test, benchmark or tool starts."""

from __future__ import annotations

import socket
import threading

_handed_out: set[int] = set()
_lock = threading.Lock()


def free_port() -> int:
    """A loopback port nothing listens on right now and that this process has not handed out before.

    The kernel offers any port free at that instant, and a port handed out is free until its process binds it: two
    calls in a row can return the same one. A suite started on free ports then binds one port twice (a `make test`
    run failed so: the policy service's gRPC and HTTP servers were given one port). Remembering what was handed out
    rules that out within a process; another process taking the port meanwhile remains possible."""
    with _lock:
        for _ in range(1000):
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = int(sock.getsockname()[1])
            if port not in _handed_out:
                _handed_out.add(port)
                return port
    raise RuntimeError("no free loopback port that this process has not handed out already")
