"""The global PostgreSQL pair of two-region mode: region-a's primary streams to region-b's replica, synchronously
(``synchronous_standby_names = 'region_b'``, ``synchronous_commit = remote_apply``: a commit returns once region-b
has applied it), as tools/region-test's drill does.

Only data that may live in every region belongs here; the regions' own clusters (``Postgres``, one per region)
are never replicated, so a pinned tenant's rows cannot leak through byte-for-byte physical replication. No
service writes here yet: which global data (the tenant directory, the ledger's hashes) moves here is issue #23's
item 2.

Locally both clusters listen on a Unix socket with ``peer`` authentication: the OS user ``postgres`` is the only
one that can log in as their superuser, so nothing on the machine's loopback can. The OS user that runs ig-infra
may log in as ``ig_global_writer`` (no superuser) to the ``ig_global`` database only: the failover's sequenced
writer (``ig_region_test.suite_failover``). With the regions in network namespaces (ig_infra.suite_network) each
cluster also listens on its end of the inter-region link, where the other region's end may log in as ``postgres``
with a password (replication, pg_rewind): the replica streams over the link, which the failover cuts. On the
loopback layout the replica follows the primary over the socket and there is no link to cut. Which cluster is
primary can change (``ig-infra failover`` / ``failback``, ``ig_infra.global_switch``); ``role()`` asks the running
cluster.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import time
from pathlib import Path

from ig_infra.components.base import Component, env_port
from ig_infra.components.postgres import find_bin_dir
from ig_infra.process import InfraError, tail
from ig_infra.suite_network import REGION_B_DIR, load

STANDBY = "region_b"
INCLUDE = "ig-global.conf"
WRITER_ROLE = "ig_global_writer"
WRITER_DATABASE = "ig_global"
FENCED_MARKER = "fenced"  # in the component's dir: written by the failover's fence, removed at failback
# wal_log_hints: pg_rewind can then bring a diverged old primary back as a replica (ig_infra.global_switch).
CONFIG = """# Written by ig-infra (ig_infra.components.global_pg) at every start.
listen_addresses = ''
wal_level = replica
wal_log_hints = on
max_wal_senders = 4
max_replication_slots = 4
hot_standby = on
wal_receiver_status_interval = 1s
shared_buffers = 16MB
max_connections = 20
"""
# The primary's only: a promoted replica with these would wait for a standby named after itself.
PRIMARY_CONFIG = f"""synchronous_commit = remote_apply
synchronous_standby_names = '{STANDBY}'
"""
HBA = f"""# Written by ig-infra: the OS user postgres over the Unix socket; the operator as the global writer.
local  all          postgres  peer
local  replication  postgres  peer
local  {WRITER_DATABASE}    {WRITER_ROLE}  peer map=global_writer
"""


# In network namespaces the replica streams over the inter-region link: TCP to the primary's end of the link, as
# the superuser with a password (scram-sha-256) that only the OS user postgres can read; pg_rewind logs in the same
# way. Only the other region's end of the link may try (nothing else can route there).
def link_hba(other_peer: str) -> str:
    return (f"host  replication  postgres  {other_peer}/32  scram-sha-256\n"
            f"host  postgres     postgres  {other_peer}/32  scram-sha-256\n")


def ident() -> str:
    """pg_ident.conf: the OS user running ig-infra may log in as the global writer role, nobody else."""
    return f"global_writer  {pwd.getpwuid(os.geteuid()).pw_name}  {WRITER_ROLE}\n"


class GlobalPostgres(Component):
    """region-a's global primary (``replica_of`` None) or region-b's streaming replica of it."""

    name = "postgres-global"

    def __init__(self, *args: object, replica_of: GlobalPostgres | None = None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.port = env_port("IG_GLOBAL_PG_PORT", 55433)  # the socket file; TCP only on the link (namespaces)
        self.replica_of = replica_of
        self.data = self.dir / "data"
        self.socket_dir = self.dir / "sock"

    def _as_postgres(self, *args: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else list(args)

    def _run(self, *args: str) -> str:
        result = subprocess.run(self._as_postgres(*args), capture_output=True, text=True)
        if result.returncode != 0:
            raise InfraError(f"{' '.join(args)} failed:\n{result.stdout[-1500:]}{result.stderr[-1500:]}")
        return result.stdout

    def run_in_region(self, *args: str) -> str:
        """A PostgreSQL tool that dials another cluster: from inside this region's namespace."""
        result = subprocess.run(self.in_region(self._as_postgres(*args)), capture_output=True, text=True)
        if result.returncode != 0:
            raise InfraError(f"{' '.join(args)} failed:\n{result.stdout[-1500:]}{result.stderr[-1500:]}")
        return result.stdout

    def _bin(self, name: str) -> str:
        bin_dir = find_bin_dir()
        if bin_dir is None:
            raise InfraError("PostgreSQL 15 not found; run `ig-infra up postgres` once to install it")
        return str(bin_dir / name)

    def sql(self, query: str) -> str:
        return self._run(self._bin("psql"), "-h", str(self.socket_dir), "-p", str(self.port), "-U", "postgres",
                         "-d", "postgres", "-Atc", query).strip()

    def running(self) -> bool:
        pid_file = self.data / "postmaster.pid"
        if not pid_file.exists():
            return False
        try:
            os.kill(int(pid_file.read_text().split()[0]), 0)
        except (ProcessLookupError, ValueError):
            return False
        except PermissionError:
            return True
        return True

    def healthy(self) -> bool:
        """Serving as a primary or a streaming replica, whichever region it is (a failover swaps them)."""
        return self.role() in ("primary", "replica")

    def start(self) -> None:
        if self.running():
            return
        for path in (self.paths.run, self.dir):
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(0o755)
        self.socket_dir.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            for path in (self.dir, self.socket_dir):
                shutil.chown(path, "postgres", "postgres")
        if not (self.data / "PG_VERSION").exists():
            if self.replica_of is None:
                self._run(self._bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=peer",
                          "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync")
            else:
                self._clone()
        conf = self.data / "postgresql.conf"
        if f"include '{INCLUDE}'" not in conf.read_text():
            with open(conf, "a") as handle:
                handle.write(f"\ninclude '{INCLUDE}'\n")
        (self.data / INCLUDE).write_text(CONFIG + (PRIMARY_CONFIG if self.replica_of is None else ""))
        self.write_access(self.hba())
        self._follow_layout()
        if os.geteuid() == 0:
            shutil.chown(self.data / INCLUDE, "postgres", "postgres")
        self.start_server()
        if self.replica_of is None and self.peer_address:
            # Replicated with everything else: the replica (and a failback's pg_rewind) log in with the same one.
            # (locally committed: the synchronous standby it would wait for is the replica still to be made)
            self.sql("SET synchronous_commit = local; SET password_encryption = 'scram-sha-256'; "
                     f"ALTER ROLE postgres PASSWORD '{self._secret()}'")
        if self.replica_of is not None:
            self._wait_streaming(within=60)

    def start_server(self) -> None:
        """pg_ctl start inside the region's namespace, listening on its end of the inter-region link there (on the
        Unix socket alone on the loopback layout)."""
        listen = f" -c listen_addresses={self.peer_address}" if self.peer_address else ""
        result = subprocess.run(self.in_region(self._as_postgres(
            self._bin("pg_ctl"), "start", "-w", "-t", "60", "-D", str(self.data), "-l", str(self.log_file),
            "-o", f"-p {self.port} -k {self.socket_dir}{listen}")), capture_output=True, text=True)
        if result.returncode != 0:
            raise InfraError(f"the global cluster did not start; see {self.log_file}\n{tail(self.log_file)}")

    def _follow_layout(self) -> None:
        """A replica made on the other network layout dials its upstream the way this one reaches it: the other
        region's end of the link in namespaces, its Unix socket on the loopback (port, slot and name unchanged)."""
        auto = self.data / "postgresql.auto.conf"
        if not (self.data / "standby.signal").exists() or not auto.exists():
            return
        lines = auto.read_text().splitlines()
        for index, line in enumerate(lines):
            if not line.startswith("primary_conninfo = '"):
                continue
            fields = dict(part.split("=", 1) for part in line.split("'")[1].split())
            network = load(self._suite_run)
            if network is not None:
                fields["host"] = network.other(self.region).peer_address
                fields["passfile"] = str(self._passfile())
            else:
                other = self._suite_run if self.region == "region-b" else self._suite_run / REGION_B_DIR
                fields["host"] = str(other / self.name / "sock")
                fields.pop("passfile", None)
            lines[index] = "primary_conninfo = '" + " ".join(f"{k}={v}" for k, v in fields.items()) + "'"
        auto.write_text("\n".join(lines) + "\n")

    @property
    def region(self) -> str:
        return "region-b" if self.paths.run.name == REGION_B_DIR else "region-a"

    @property
    def _suite_run(self) -> Path:
        return self.paths.run.parent if self.region == "region-b" else self.paths.run

    @property
    def peer_address(self) -> str | None:
        """This region's end of the inter-region link, None on the loopback layout."""
        network = load(self._suite_run)
        return network.region(self.region).peer_address if network else None

    def _secret(self) -> str:
        """The replication password, one per suite, in region-a's run dir (root only)."""
        path = self._suite_run / "global-replication.secret"
        if not path.exists():  # created 0600: never readable by others, not even for a moment
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_urlsafe(24) + "\n")
        return path.read_text().strip()

    def _passfile(self) -> Path:
        """The password in a libpq passfile that the OS user postgres owns and only it can read."""
        passfile = self.dir / "replication.pgpass"
        line = f"*:*:*:postgres:{self._secret()}\n"
        if passfile.exists() and passfile.read_text() == line:
            return passfile  # written once: a running walreceiver may be reading it
        passfile.unlink(missing_ok=True)
        descriptor = os.open(passfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(line)
        if os.geteuid() == 0:
            shutil.chown(passfile, "postgres", "postgres")
        return passfile

    def conninfo_from(self, client: GlobalPostgres, database: str | None = None) -> str:
        """How ``client`` (the other region's cluster) reaches this one: over the inter-region link in network
        namespaces, else over this one's Unix socket."""
        where = (f"host={self.peer_address} port={self.port} passfile={client._passfile()}" if self.peer_address
                 else f"host={self.socket_dir} port={self.port}")
        return f"{where} user=postgres" + (f" dbname={database}" if database else "")

    def hba(self) -> str:
        """The access rules of a serving cluster: HBA, and the other region's end of the link in namespaces."""
        network = load(self._suite_run)
        if network is None:
            return HBA
        return HBA + link_hba(network.other(self.region).peer_address)

    def write_access(self, hba: str) -> None:
        """pg_hba.conf and pg_ident.conf (read at start and at ``pg_reload_conf()``)."""
        (self.data / "pg_hba.conf").write_text(hba)
        (self.data / "pg_ident.conf").write_text(ident())
        if os.geteuid() == 0:
            for name in ("pg_hba.conf", "pg_ident.conf"):
                shutil.chown(self.data / name, "postgres", "postgres")

    def writer_dsn(self) -> str:
        """The failover writer's DSN (asyncpg or libpq): the Unix socket, peer authentication, no password."""
        return f"postgresql://{WRITER_ROLE}@/{WRITER_DATABASE}?host={self.socket_dir}&port={self.port}"

    @property
    def fenced_marker(self) -> os.PathLike[str]:
        return self.dir / FENCED_MARKER

    def role(self) -> str:
        """What the running cluster is now: ``primary``, ``replica`` (streaming), ``fenced`` (an old primary kept
        in recovery by the failover: it answers reads and refuses every write), ``recovering`` or ``down``."""
        if not self.running():
            return "down"
        try:
            if self.sql("SELECT pg_is_in_recovery()") == "f":
                return "primary"
            if self.sql("SELECT status FROM pg_stat_wal_receiver") == "streaming":
                return "replica"
        except InfraError:
            return "down"
        return "fenced" if (self.dir / FENCED_MARKER).exists() else "recovering"

    def _clone(self) -> None:
        """A fresh physical replica of region-a's primary (``pg_basebackup`` with a replication slot)."""
        primary = self.replica_of
        assert primary is not None
        # A slot left by a replica whose data is gone (its run dir removed) would make pg_basebackup -C refuse; no
        # replica streams from it (this one is being made), so it is dropped rather than reused half-way.
        primary.sql(f"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                    f"WHERE slot_name = '{STANDBY}' AND NOT active")
        upstream = primary.conninfo_from(self)
        self.run_in_region(self._bin("pg_basebackup"), "-d", upstream, "-D", str(self.data), "-X", "stream",
                           "-c", "fast", "-C", "-S", STANDBY, "--no-sync")
        # Its own recovery settings only: the primary's auto.conf must not come along.
        (self.data / "postgresql.auto.conf").write_text(
            f"primary_conninfo = '{upstream} application_name={STANDBY}'\nprimary_slot_name = '{STANDBY}'\n")
        (self.data / "standby.signal").touch()
        if os.geteuid() == 0:
            for name in ("postgresql.auto.conf", "standby.signal"):
                shutil.chown(self.data / name, "postgres", "postgres")

    def _wait_streaming(self, within: float) -> None:
        primary = self.replica_of
        assert primary is not None
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                if primary.sql(f"SELECT sync_state FROM pg_stat_replication WHERE application_name = '{STANDBY}'") \
                        == "sync":
                    return
            except InfraError:
                pass
            time.sleep(0.3)
        raise InfraError(f"region-b's global replica is not streaming from region-a after {within:.0f}s; see "
                         f"{self.log_file}\n{tail(self.log_file)}")

    def stop(self) -> bool:
        if not self.running():
            return False
        self._run(self._bin("pg_ctl"), "stop", "-D", str(self.data), "-m", "fast", "-w", "-t", "30")
        return True

    def address(self) -> str:
        built = "built as primary, synchronous (remote_apply) to region-b" if self.replica_of is None \
            else "built as streaming replica of region-a's"
        now = self.role()
        return f"{self.socket_dir}/.s.PGSQL.{self.port} (now: {now.upper()}; {built})"

    def env(self) -> dict[str, str]:
        return {}
