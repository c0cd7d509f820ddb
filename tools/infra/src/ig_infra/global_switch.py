"""Which global cluster is primary: fence an old primary, promote a replica, rebuild a cluster as the replica of
another (pg_rewind where it applies, else a fresh base backup), and a planned switchover.

The clusters are ``GlobalPostgres`` components (ig_infra.components.global_pg); every command runs as the OS user
``postgres`` over the Unix sockets. The slot and ``application_name`` of a replica are named after its region
(``region_a``, ``region_b``), so the primary's ``synchronous_standby_names`` names the replica it waits for.

*Fenced* means: the old primary is restarted in recovery (``standby.signal``) with no upstream and a
``pg_hba.conf`` without any replication line. A server in recovery refuses every write of every role (PostgreSQL
itself, not a setting a client could change back), still answers reads, and nobody can stream from it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ig_infra.components.global_pg import (
    CONFIG,
    INCLUDE,
    PRIMARY_CONFIG,
    WRITER_DATABASE,
    WRITER_ROLE,
    GlobalPostgres,
)
from ig_infra.process import InfraError, tail

# The fenced cluster: the superuser (inspection) and the writer (so that its refusal can be seen), no replication.
FENCED_HBA = f"""# Written by ig-infra failover: FENCED old primary (in recovery: refuses every write; no replication).
local  all          postgres  peer
local  {WRITER_DATABASE}    {WRITER_ROLE}  peer map=global_writer
"""


def slot_of(region: str) -> str:
    return region.replace("-", "_")


def _chown(*paths: Path) -> None:
    if os.geteuid() == 0:
        for path in paths:
            shutil.chown(path, "postgres", "postgres")


def _pg_ctl(cluster: GlobalPostgres, *args: str) -> None:
    cluster._run(cluster._bin("pg_ctl"), *args, "-D", str(cluster.data))


def _start(cluster: GlobalPostgres) -> None:
    cluster.start_server()


def stop(cluster: GlobalPostgres, mode: str) -> None:
    if cluster.running():
        _pg_ctl(cluster, "stop", "-m", mode, "-w", "-t", "60")


def ensure_writer(primary: GlobalPostgres) -> None:
    """The writer role and its database and table on the primary (replication brings them to the replica), and both
    clusters' access files re-read: a suite started before the role existed gets its pg_hba/pg_ident lines."""
    primary.write_access(primary.hba())
    primary.sql("SELECT pg_reload_conf()")
    if primary.sql(f"SELECT count(*) FROM pg_roles WHERE rolname = '{WRITER_ROLE}'") == "0":
        primary.sql(f"CREATE ROLE {WRITER_ROLE} LOGIN")
    if primary.sql(f"SELECT count(*) FROM pg_database WHERE datname = '{WRITER_DATABASE}'") == "0":
        primary.sql(f"CREATE DATABASE {WRITER_DATABASE} OWNER {WRITER_ROLE}")
    primary._run(primary._bin("psql"), "-h", str(primary.socket_dir), "-p", str(primary.port), "-U", "postgres",
                 "-d", WRITER_DATABASE, "-Atc",
                 f"CREATE SCHEMA IF NOT EXISTS global AUTHORIZATION {WRITER_ROLE}; SET ROLE {WRITER_ROLE}; "
                 "CREATE TABLE IF NOT EXISTS global.writes (seq bigint PRIMARY KEY, region text NOT NULL, "
                 "tenant text NOT NULL, written_at timestamptz NOT NULL DEFAULT now())")


def refresh_access(cluster: GlobalPostgres) -> None:
    cluster.write_access(cluster.hba())
    cluster.sql("SELECT pg_reload_conf()")


def fence(old_primary: GlobalPostgres) -> None:
    """Stop at once (no shutdown checkpoint, nothing more shipped: the cut) and restart in recovery, fenced."""
    stop(old_primary, "immediate")
    (old_primary.data / "postgresql.auto.conf").write_text("# fenced by ig-infra failover: no upstream\n")
    (old_primary.data / "standby.signal").touch()
    old_primary.write_access(FENCED_HBA)
    _chown(old_primary.data / "postgresql.auto.conf", old_primary.data / "standby.signal")
    Path(old_primary.fenced_marker).write_text(f"fenced at {time.time():.3f}\n")
    _start(old_primary)
    deadline = time.monotonic() + 30
    while old_primary.role() not in ("fenced", "replica", "primary"):
        if time.monotonic() > deadline:
            raise InfraError(f"the fenced cluster does not answer; see {old_primary.log_file}\n"
                             f"{tail(old_primary.log_file)}")
        time.sleep(0.1)


def promote(replica: GlobalPostgres) -> None:
    """``pg_promote`` and no synchronous standby until one is rebuilt (a primary alone must not wait for one)."""
    if replica.sql("SELECT pg_promote(wait => true, wait_seconds => 10)") != "t":
        raise InfraError(f"pg_promote did not finish within 10 s; see {replica.log_file}")
    replica.sql("ALTER SYSTEM SET synchronous_standby_names = ''")
    replica.sql("SELECT pg_reload_conf()")


@dataclass(frozen=True)
class Rebuilt:
    method: str  # "pg_rewind" | "pg_basebackup"
    reason: str
    seconds: float


def rebuild_as_replica(stale: GlobalPostgres, primary: GlobalPostgres, stale_region: str) -> Rebuilt:
    """``stale`` (stopped or fenced) follows ``primary``: pg_rewind when it applies (the target was shut down and
    has wal_log_hints or checksums), else a fresh pg_basebackup; then its own configuration, a slot on the primary
    and the primary waiting for it again (remote_apply: region-a's built configuration names region_b; any other
    primary is told by ALTER SYSTEM)."""
    started = time.monotonic()
    slot = slot_of(stale_region)
    stop(stale, "fast")
    # A just-promoted primary has written its new timeline to pg_control only after a checkpoint; without one
    # pg_rewind reads the old timeline there and wrongly finds nothing to rewind.
    primary.sql("CHECKPOINT")
    upstream = primary.conninfo_from(stale)
    rewind = subprocess.run(stale.in_region(stale._as_postgres(
        stale._bin("pg_rewind"), "--target-pgdata", str(stale.data),
        "--source-server", primary.conninfo_from(stale, "postgres"))), capture_output=True, text=True)
    said = (rewind.stdout + rewind.stderr).strip().splitlines()
    if rewind.returncode == 0:
        method, why = "pg_rewind", "; ".join(line.removeprefix("pg_rewind: ") for line in said[-2:]) or "done"
    else:
        method = "pg_basebackup"
        why = "pg_rewind did not apply: " + (said[-1] if said else f"exit status {rewind.returncode}")
        shutil.rmtree(stale.data)
    if primary.sql(f"SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}'") == "0":
        primary.sql(f"SELECT pg_create_physical_replication_slot('{slot}', true)")
    if method == "pg_basebackup":
        stale.run_in_region(stale._bin("pg_basebackup"), "-d", upstream, "-D", str(stale.data), "-X", "stream",
                            "-c", "fast", "-S", slot, "--no-sync")
        conf = stale.data / "postgresql.conf"
        if f"include '{INCLUDE}'" not in conf.read_text():
            with open(conf, "a") as handle:
                handle.write(f"\ninclude '{INCLUDE}'\n")
    # Its own settings, never the source's (pg_rewind and pg_basebackup copy the configuration files too).
    (stale.data / INCLUDE).write_text(CONFIG + (PRIMARY_CONFIG if stale.replica_of is None else ""))
    (stale.data / "postgresql.auto.conf").write_text(
        f"primary_conninfo = '{upstream} application_name={slot}'\nprimary_slot_name = '{slot}'\n")
    (stale.data / "standby.signal").touch()
    stale.write_access(stale.hba())
    _chown(stale.data / INCLUDE, stale.data / "postgresql.auto.conf", stale.data / "standby.signal")
    Path(stale.fenced_marker).unlink(missing_ok=True)
    _start(stale)
    if primary.replica_of is None:
        primary.sql("ALTER SYSTEM RESET synchronous_standby_names")
    else:
        primary.sql(f"ALTER SYSTEM SET synchronous_standby_names = '{slot}'")
    primary.sql("SELECT pg_reload_conf()")
    wait_sync(primary, slot, stale)
    return Rebuilt(method, why, round(time.monotonic() - started, 3))


def wait_sync(primary: GlobalPostgres, slot: str, replica: GlobalPostgres, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if primary.sql(f"SELECT sync_state FROM pg_stat_replication WHERE application_name = '{slot}'") == "sync":
                return
        except InfraError:
            pass
        time.sleep(0.2)
    raise InfraError(f"{slot} is not a synchronous replica after {within:.0f}s; see {replica.log_file}\n"
                     f"{tail(replica.log_file)}")


def reset_recovery_settings(cluster: GlobalPostgres) -> None:
    """A promoted cluster keeps no upstream or slot setting (they would mislead whoever reads its configuration)."""
    for setting in ("primary_conninfo", "primary_slot_name"):
        cluster.sql(f"ALTER SYSTEM RESET {setting}")
    cluster.sql("SELECT pg_reload_conf()")
