"""PostgreSQL 15 instances of one region: started inside the region's namespace, run as the ``postgres`` user.

Each region has two clusters:
- ``global`` (port 5432): region-a's is the primary, region-b's a physical streaming replica of it (and the
  other way round after a failover). Physical replication copies the whole cluster, so it holds only data that
  may live in every region.
- ``resident`` (port 5433): never replicated to the other region; one database per tenant pinned to this
  region, plus the region's own service databases.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ig_region_test.network import RegionNet
from ig_region_test.runstate import PG_BIN, RunState

USER = "ig"
GLOBAL_PORT = 5432
RESIDENT_PORT = 5433

COMMON_CONFIG = """
# region-test: written by ig_region_test.pg
listen_addresses = '*'
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
hot_standby = on
wal_log_hints = on
wal_receiver_status_interval = 1s
wal_sender_timeout = 5s
wal_receiver_timeout = 5s
shared_buffers = 32MB
max_connections = 60
log_min_messages = warning
log_line_prefix = '%m [%p] '
"""

# Trust only inside the private regions: the addresses exist only in namespaces this tool creates.
HBA = """
local all all trust
host all all 127.0.0.0/8 trust
host all all 10.251.0.0/16 trust
local replication all trust
host replication all 127.0.0.0/8 trust
host replication all 10.251.0.0/16 trust
"""


class PgError(RuntimeError):
    pass


def as_postgres(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv]


@dataclass
class PgInstance:
    region: RegionNet
    role: str  # "global" | "resident"
    base_port: int
    root: Path
    state: RunState

    @property
    def port(self) -> int:
        return self.region.port(self.base_port)

    @property
    def data(self) -> Path:
        return self.root / f"{self.region.name}-{self.role}"

    @property
    def log(self) -> Path:
        return self.root / f"{self.region.name}-{self.role}.log"

    @property
    def socket_dir(self) -> Path:
        return self.root / f"{self.region.name}-{self.role}.sock"

    def dsn(self, database: str = "postgres") -> str:
        # No TLS inside the private regions; also keeps a half-cut link from failing as an "SSL upgrade" error.
        return f"postgresql://{USER}@{self.region.client_host}:{self.port}/{database}?sslmode=disable"

    def _prepare_dirs(self) -> None:
        for path in (self.socket_dir, self.data):
            path.mkdir(parents=True, exist_ok=True)
            shutil.chown(path, "postgres", "postgres")
        self.data.chmod(0o700)
        self.log.touch()
        shutil.chown(self.log, "postgres", "postgres")
        self.state.remember(pg_data=self.data)

    def create_from(self, template: Path) -> None:
        """A new cluster as a copy of the cached ``initdb`` output (initdb costs seconds on a busy machine)."""
        self._prepare_dirs()
        shutil.rmtree(self.data)
        copied = subprocess.run(["cp", "-a", str(template), str(self.data)], capture_output=True, text=True)
        if copied.returncode != 0:
            raise PgError(f"copying the cluster template failed: {copied.stderr.strip()}")

    def configure(self) -> None:
        conf = self.data / "postgresql.conf"
        with open(conf, "a") as handle:
            handle.write(COMMON_CONFIG)
        (self.data / "pg_hba.conf").write_text(HBA)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.socket_dir}"
        if self.region.netns is None:
            options += f" -c listen_addresses={self.region.client_host}"
        result = subprocess.run(
            self.region.wrap(as_postgres([str(PG_BIN / "pg_ctl"), "start", "-w", "-t", "60", "-D", str(self.data),
                                          "-l", str(self.log), "-o", options])),
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise PgError(f"{self.region.name} {self.role} PostgreSQL did not start: {result.stderr.strip()}\n"
                          f"{self.tail()}")

    def stop(self, mode: str = "fast") -> None:
        subprocess.run(as_postgres([str(PG_BIN / "pg_ctl"), "stop", "-D", str(self.data), "-m", mode, "-w",
                                    "-t", "30"]), capture_output=True)

    def kill(self) -> int | None:
        """SIGKILL the postmaster (a crash, not a shutdown); returns its pid."""
        pid_file = self.data / "postmaster.pid"
        if not pid_file.exists():
            return None
        pid = int(pid_file.read_text().splitlines()[0])
        subprocess.run(["kill", "-KILL", str(pid)], capture_output=True)
        return pid

    def clone_from(self, primary: PgInstance, slot: str) -> None:
        """A fresh physical replica of ``primary``, copied over the inter-region link from inside this region."""
        if self.data.exists():
            shutil.rmtree(self.data)
        self._prepare_dirs()
        source = primary.region.peer_host if self.region.netns else primary.region.client_host
        result = subprocess.run(
            self.region.wrap(as_postgres([
                str(PG_BIN / "pg_basebackup"), "-h", source, "-p", str(primary.port), "-U", USER,
                "-D", str(self.data), "-X", "stream", "-c", "fast", "-C", "-S", slot, "--no-sync",
            ])),
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise PgError(f"pg_basebackup of {primary.region.name} into {self.region.name} failed: "
                          f"{result.stderr.strip()}")
        # Only this replica's own recovery settings: nothing instance-specific (such as the primary's
        # synchronous_standby_names) may survive the copy, or the replica would wait for itself once promoted.
        (self.data / "postgresql.auto.conf").write_text(
            f"primary_conninfo = 'host={source} port={primary.port} user={USER} application_name={slot}'\n"
            f"primary_slot_name = '{slot}'\n"
        )
        (self.data / "standby.signal").touch()
        shutil.chown(self.data / "postgresql.auto.conf", "postgres", "postgres")
        shutil.chown(self.data / "standby.signal", "postgres", "postgres")

    def tail(self, lines: int = 12) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])




def cluster_template(cache: Path) -> Path:
    """``initdb`` once per machine; every region's clusters start as copies of it (same system identifier)."""
    version = subprocess.run([str(PG_BIN / "postgres"), "--version"], capture_output=True, text=True).stdout.split()
    template = cache / f"region-test-pg{version[-1] if version else 'unknown'}-template"
    if (template / "PG_VERSION").exists():
        return template
    scratch = template.with_name(template.name + ".tmp")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    shutil.chown(scratch, "postgres", "postgres")
    scratch.chmod(0o700)
    result = subprocess.run(as_postgres([str(PG_BIN / "initdb"), "-D", str(scratch), "-U", USER, "--auth=trust",
                                         "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync"]),
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise PgError(f"initdb failed: {result.stdout[-1500:]}{result.stderr[-1500:]}")
    scratch.rename(template)
    return template
