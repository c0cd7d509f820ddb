"""Run a region's processes inside its network namespace, and open sockets there from this process.

A region's run dir names its namespace in the file ``netns`` (written by ``ig_infra.suite_network`` when it builds
the regions; absent on the loopback layout). Processes get there through ``ip netns exec``; this process, which
checks their health and must not believe a forwarded port, creates its own sockets there with ``setns(2)``. A
socket belongs to the namespace it was created in for its whole life, so switching back right after creating one
is enough, and the switch is per thread (setns on a network namespace affects the calling thread only).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path

CLONE_NEWNET = 0x40000000
NAMESPACE_FILE = "netns"
_libc = ctypes.CDLL(None, use_errno=True)


class NamespaceError(RuntimeError):
    pass


def namespace_of(run: Path) -> str | None:
    """The network namespace a region's processes run in (its run dir says), None on the loopback layout."""
    try:
        name = (run / NAMESPACE_FILE).read_text().strip()
    except FileNotFoundError:
        return None
    return name or None


def wrapped(netns: str | None, argv: Sequence[str]) -> list[str]:
    """``argv`` run inside ``netns`` (unchanged for None)."""
    return ["ip", "netns", "exec", netns, *argv] if netns else list(argv)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise NamespaceError(f"setns: {os.strerror(error)}")


@contextlib.contextmanager
def entered(netns: str | None) -> Iterator[None]:
    """Within the block this thread's new sockets belong to ``netns`` (nothing changes for None)."""
    if netns is None:
        yield
        return
    try:
        target = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    except FileNotFoundError:
        raise NamespaceError(f"network namespace {netns} does not exist (was the suite's network removed?)") from None
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)


def new_socket(netns: str | None, family: int = socket.AF_INET) -> socket.socket:
    with entered(netns):
        return socket.socket(family, socket.SOCK_STREAM)


def port_open_in(netns: str | None, host: str, port: int, timeout: float = 0.3) -> bool:
    """Whether something listens on ``host:port`` as seen from inside ``netns``."""
    with new_socket(netns) as sock:
        sock.settimeout(timeout)
        return sock.connect_ex((host, port)) == 0
