"""free_port never hands one process the same port twice (a suite started on free ports would bind it twice)."""

from __future__ import annotations

import socket

from ig_common.ports import free_port


def test_a_process_is_never_handed_the_same_port_twice() -> None:
    # 2,000 draws from ~28,000 ephemeral ports: the kernel alone repeats some (the birthday bound: ~70 pairs).
    ports = [free_port() for _ in range(2000)]
    assert len(set(ports)) == len(ports)


def test_the_port_handed_out_is_free_to_bind() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
