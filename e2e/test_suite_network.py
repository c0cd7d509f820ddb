"""The two-region suite's network (issue #23, item 1): the namespaces `make up` runs each region in, the link between
them that the failover cuts, and the bridge that keeps the documented 127.0.0.1 ports working.

Real namespaces, a real veth link, real PostgreSQL: the global pair of a private run dir (ig_infra.suite_network,
ig_infra.components.global_pg, ig_infra.global_switch), and the bridge (ig_infra.port_bridge) in front of plain
listeners. A namespace that cannot be made fails the test (this machine runs `make up` in them), it never skips.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from ig_infra import global_switch
from ig_infra.components.global_pg import GlobalPostgres
from ig_infra.netns import entered, port_open_in
from ig_infra.paths import Paths
from ig_infra.port_bridge import Route, write_routes
from ig_infra.process import InfraError, free_port, read_pid, spawn, terminate, wait_until
from ig_infra.services import SERVICES, ServiceProcess
from ig_infra.suite_network import (
    SuiteNetwork,
    destroy,
    ensure,
    inter_region_link_up,
    pids_inside,
    set_inter_region_link,
)

pytestmark = pytest.mark.integration


@dataclass
class GlobalPair:
    network: SuiteNetwork
    primary: GlobalPostgres
    replica: GlobalPostgres
    root: Path


def _kill_inside(network: SuiteNetwork) -> None:
    for region in network.regions:
        for pid in pids_inside(region.netns):
            with contextlib.suppress(ProcessLookupError):
                subprocess.run(["kill", "-9", str(pid)], check=False)


@pytest.fixture(scope="module")
def pair(infra: object) -> Iterator[GlobalPair]:
    # Not under pytest's tmp_path: PostgreSQL runs as `postgres`, which cannot traverse root's 0700 /tmp/pytest-of-*.
    root = Path(f"/var/tmp/ig-suite-network-test-{free_port()}")
    root.mkdir(mode=0o755)
    cache = Paths.from_environment().cache
    network = ensure(root)
    primary = GlobalPostgres(Paths(cache=cache, run=root))
    replica = GlobalPostgres(Paths(cache=cache, run=root / "region-b"), replica_of=primary)
    primary.port, replica.port = free_port(), free_port()
    try:
        primary.start()
        replica.start()
        yield GlobalPair(network, primary, replica, root)
    finally:
        for cluster in (replica, primary):
            with contextlib.suppress(InfraError):
                cluster.stop()
        _kill_inside(network)
        destroy(root, network)
        shutil.rmtree(root, ignore_errors=True)


def _receiver(cluster: GlobalPostgres) -> str:
    return cluster.sql("SELECT coalesce(status, '') || ' ' || coalesce(sender_host, '') FROM pg_stat_wal_receiver")


def test_each_global_cluster_runs_inside_its_region_namespace(pair: GlobalPair) -> None:
    for cluster, region in ((pair.primary, pair.network.a), (pair.replica, pair.network.b)):
        postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
        assert postmaster in pids_inside(region.netns), (cluster.region, region.netns)


def test_the_replica_streams_over_the_inter_region_link(pair: GlobalPair) -> None:
    assert _receiver(pair.replica) == f"streaming {pair.network.a.peer_address}"
    assert pair.primary.sql("SELECT sync_state FROM pg_stat_replication WHERE application_name = 'region_b'") \
        == "sync"


def test_a_region_reaches_the_other_only_over_the_link(pair: GlobalPair) -> None:
    a, b = pair.network.a, pair.network.b
    # region-a's cluster listens on its end of the link, nowhere else: not on region-a's loopback, not on the host's
    assert port_open_in(b.netns, a.peer_address, pair.primary.port)
    assert not port_open_in(a.netns, "127.0.0.1", pair.primary.port)
    assert not port_open_in(None, a.peer_address, pair.primary.port)  # the host has no route into the regions
    assert not port_open_in(None, "127.0.0.1", pair.primary.port)


def test_the_password_the_replica_logs_in_with_is_readable_by_postgres_only(pair: GlobalPair) -> None:
    passfile = pair.replica.dir / "replication.pgpass"
    assert passfile.stat().st_mode & 0o077 == 0, oct(passfile.stat().st_mode)
    assert passfile.owner() == "postgres"
    secret = pair.root / "global-replication.secret"
    assert secret.stat().st_mode & 0o077 == 0 and secret.owner() == "root", oct(secret.stat().st_mode)
    assert "passfile=" in (pair.replica.data / "postgresql.auto.conf").read_text()
    # a login from the other end of the link without the password is refused (scram-sha-256, not trust)
    refused = subprocess.run(pair.replica.in_region(pair.replica._as_postgres(
        pair.replica._bin("psql"), "-w", "-d", f"host={pair.network.a.peer_address} port={pair.primary.port} "
                                                "user=postgres dbname=postgres passfile=/dev/null", "-c", "SELECT 1")),
        capture_output=True, text=True)
    assert refused.returncode != 0 and "password" in refused.stderr, refused.stderr


def test_cutting_the_link_partitions_and_failback_rejoins_over_it(pair: GlobalPair) -> None:
    network = pair.network
    set_inter_region_link(network, False)
    try:
        assert not inter_region_link_up(network)
        assert not port_open_in(network.b.netns, network.a.peer_address, pair.primary.port, timeout=1.0)
        # a synchronous commit can no longer be acknowledged: nothing reaches the replica
        global_switch.fence(pair.primary)
        global_switch.promote(pair.replica)
        assert (pair.primary.role(), pair.replica.role()) == ("fenced", "primary")
    finally:
        set_inter_region_link(network, True)
    assert inter_region_link_up(network)
    rejoined = global_switch.rebuild_as_replica(pair.primary, pair.replica, "region-a")
    assert rejoined.method in ("pg_rewind", "pg_basebackup"), rejoined
    assert _receiver(pair.primary) == f"streaming {network.b.peer_address}"
    assert (pair.primary.role(), pair.replica.role()) == ("replica", "primary")


@pytest.fixture
def namespace() -> Iterator[str]:
    name = f"igmc-t{free_port()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    try:
        yield name
    finally:
        for pid in pids_inside(name):
            subprocess.run(["kill", "-9", str(pid)], check=False)
        subprocess.run(["ip", "netns", "del", name], check=False)


def _echo_server(netns: str | None, port: int) -> socket.socket:
    with entered(netns):
        server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen()

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = server.accept()
                with conn:
                    conn.sendall(b"echo:" + conn.recv(100))

    threading.Thread(target=serve, daemon=True).start()
    return server


def _ask(port: int, netns: str | None = None, *, half_close: bool = False) -> bytes:
    with entered(netns):
        client = socket.socket()
    with client:
        client.settimeout(5)
        client.connect(("127.0.0.1", port))
        client.sendall(b"hi")
        if half_close:  # "I am done sending": the answer must still come back
            client.shutdown(socket.SHUT_WR)
        try:
            return client.recv(100)
        except ConnectionResetError:
            return b""


def test_the_bridge_forwards_both_ways_and_closes_when_nothing_is_behind(namespace: str, tmp_path: Path) -> None:
    inside, on_host, dead = free_port(), free_port(), free_port()
    servers = [_echo_server(namespace, inside), _echo_server(None, on_host)]
    routes = [Route(None, "127.0.0.1", inside, namespace, "127.0.0.1", inside, "a region's listener"),
              Route(namespace, "127.0.0.1", on_host, None, "127.0.0.1", on_host, "a shared one on the host"),
              Route(None, "127.0.0.1", dead, namespace, "127.0.0.1", dead, "nothing behind")]
    write_routes(tmp_path / "routes.json", routes)
    pid_file = tmp_path / "bridge.pid"
    spawn([sys.executable, "-m", "ig_infra.port_bridge", str(tmp_path / "routes.json")],
          log_file=tmp_path / "bridge.log", pid_file=pid_file)
    try:
        wait_until(lambda: port_open_in(None, "127.0.0.1", dead), timeout=20, what="bridge",
                   log_file=tmp_path / "bridge.log", alive=lambda: read_pid(pid_file) is not None)
        assert _ask(inside) == b"echo:hi"  # host -> region
        assert _ask(on_host, namespace) == b"echo:hi"  # region -> host
        assert _ask(inside, half_close=True) == b"echo:hi"
        # The host cannot reach the region's listener but through the bridge, nor the region the host's.
        assert not port_open_in(None, "127.0.0.1", free_port())
        started = time.monotonic()
        assert _ask(dead) == b""  # accepted, then closed at once: a health check sees nothing there
        assert time.monotonic() - started < 2
        logged = (tmp_path / "bridge.log").read_text()
        assert f"refused: host 127.0.0.1:{dead} -> {namespace} 127.0.0.1:{dead}" in logged
    finally:
        terminate(pid_file)
        for server in servers:
            server.close()


def _bridge(tmp_path: Path, routes: list[Route]) -> Path:
    write_routes(tmp_path / "routes.json", routes)
    pid_file = tmp_path / "bridge.pid"
    spawn([sys.executable, "-m", "ig_infra.port_bridge", str(tmp_path / "routes.json")],
          log_file=tmp_path / "bridge.log", pid_file=pid_file)
    # Its log, not a probe connection: the servers below accept one connection only.
    log = tmp_path / "bridge.log"
    wait_until(lambda: log.exists() and "ready:" in log.read_text(), timeout=20, what="bridge", log_file=log,
               alive=lambda: read_pid(pid_file) is not None)
    return pid_file


def test_the_bridge_moves_large_transfers_intact_to_a_slow_reader(namespace: str, tmp_path: Path) -> None:
    """64 MiB each way through the bridge while the reader pauses: the bridge must stop reading while its sink is
    full and resume after, losing and reordering nothing (the spliced path's partial writes)."""
    port = free_port()
    payload = hashlib.sha256(b"seed").digest() * (64 * 1024 * 1024 // 32)
    with entered(namespace):
        server = socket.socket()
    server.bind(("127.0.0.1", port))
    server.listen()
    received = hashlib.sha256()

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(1 << 20):  # the upload, to its end (the client's half-close)
                received.update(data)
            conn.sendall(payload)  # then the download

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    pid_file = _bridge(tmp_path, [Route(None, "127.0.0.1", port, namespace, "127.0.0.1", port, "bulk")])
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
            client.sendall(payload)
            client.shutdown(socket.SHUT_WR)
            time.sleep(1.0)  # the download backs up into the bridge meanwhile
            downloaded, size = hashlib.sha256(), 0
            while data := client.recv(1 << 16):
                downloaded.update(data)
                size += len(data)
        thread.join(timeout=30)
        assert size == len(payload)
        assert downloaded.digest() == hashlib.sha256(payload).digest()
        assert received.digest() == hashlib.sha256(payload).digest()
    finally:
        terminate(pid_file)
        server.close()


def test_a_reset_on_one_side_is_a_reset_on_the_other(namespace: str, tmp_path: Path) -> None:
    port = free_port()
    with entered(namespace):
        server = socket.socket()
    server.bind(("127.0.0.1", port))
    server.listen()

    def reset_after_hello() -> None:
        conn, _ = server.accept()
        conn.recv(100)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()

    threading.Thread(target=reset_after_hello, daemon=True).start()
    pid_file = _bridge(tmp_path, [Route(None, "127.0.0.1", port, namespace, "127.0.0.1", port, "reset")])
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            client.sendall(b"hello")
            with pytest.raises(ConnectionResetError):
                while client.recv(100):
                    pass
    finally:
        terminate(pid_file)
        server.close()


def test_a_service_whose_settings_name_an_unforwarded_port_does_not_start(namespace: str, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "netns").write_text(namespace + "\n")
    spec = next(s for s in SERVICES if s.name == "audit-portal")
    service = ServiceProcess(spec, Paths(cache=tmp_path, run=run))
    assert service.netns == namespace
    missing = free_port()
    with pytest.raises(InfraError, match=f"IG_OIDC_ISSUER names 127.0.0.1:{missing}"):
        service._check_reachable({"IG_OIDC_ISSUER": f"http://127.0.0.1:{missing}/dex"})
    listener = _echo_server(namespace, missing)
    try:
        service._check_reachable({"IG_OIDC_ISSUER": f"http://127.0.0.1:{missing}/dex"})
    finally:
        listener.close()
