"""PostgreSQL 15 from Debian's packages on a project-owned data directory and port."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from ig_infra.components.base import Component, env_port
from ig_infra.prereqs import apt_install
from ig_infra.process import InfraError, ensure_port_free, port_open, tail, wait_until

PG_MAJOR = "15"
DB_USER = "ig"
DB_NAME = "ig"


def find_bin_dir() -> Path | None:
    candidate = Path(f"/usr/lib/postgresql/{PG_MAJOR}/bin")
    if (candidate / "pg_ctl").exists():
        return candidate
    found = shutil.which("pg_ctl")
    if found:
        version = subprocess.run([found, "--version"], capture_output=True, text=True).stdout
        if f") {PG_MAJOR}." in version:
            return Path(found).parent
    return None


class Postgres(Component):
    name = "postgres"

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.port = env_port("IG_PG_PORT", 55432)
        self.host = "127.0.0.1"
        self.data = self.dir / "data"
        self.socket_dir = self.dir / "sock"

    def install(self) -> None:
        if find_bin_dir() is None:
            apt_install(f"postgresql-{PG_MAJOR}", "postgresql-contrib")
        if find_bin_dir() is None:
            raise InfraError(f"PostgreSQL {PG_MAJOR} not found after install (looked in /usr/lib/postgresql)")

    def _as_owner(self, *args: str) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *args]
        return list(args)

    def _run(self, *args: str) -> None:
        result = subprocess.run(self._as_owner(*args), capture_output=True, text=True)
        if result.returncode != 0:
            raise InfraError(f"{' '.join(args)} failed:\n{result.stdout[-1500:]}{result.stderr[-1500:]}")

    def running(self) -> bool:
        bin_dir = find_bin_dir()
        if bin_dir is None or not (self.data / "postmaster.pid").exists():
            return False
        status = subprocess.run(self._as_owner(str(bin_dir / "pg_ctl"), "status", "-D", str(self.data)),
                                capture_output=True)
        return status.returncode == 0

    def healthy(self) -> bool:
        return self.running() and port_open(self.host, self.port)

    def start(self) -> None:
        bin_dir = find_bin_dir()
        assert bin_dir is not None
        if self.running():
            return
        ensure_port_free(self.host, self.port, "PostgreSQL", "IG_PG_PORT")
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            for path in (self.paths.run, self.dir):
                path.chmod(0o755)
            shutil.chown(self.dir, "postgres", "postgres")
            shutil.chown(self.socket_dir, "postgres", "postgres")
            self.log_file.touch()
            shutil.chown(self.log_file, "postgres", "postgres")
        if not (self.data / "PG_VERSION").exists():
            self._run(str(bin_dir / "initdb"), "-D", str(self.data), "-U", DB_USER, "--auth=trust",
                      "--encoding=UTF8", "--locale=C.UTF-8")
        options = " ".join([
            f"-p {self.port}", f"-k {self.socket_dir}", f"-c listen_addresses={self.host}",
            "-c max_connections=400", "-c shared_buffers=256MB", "-c wal_level=logical",
            "-c shared_preload_libraries=pg_stat_statements", "-c max_wal_senders=10",
            "-c max_replication_slots=10",
        ])
        result = subprocess.run(
            self._as_owner(str(bin_dir / "pg_ctl"), "start", "-w", "-t", "60", "-D", str(self.data),
                           "-l", str(self.log_file), "-o", options),
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise InfraError(f"PostgreSQL did not start; see {self.log_file}\n{tail(self.log_file)}")
        wait_until(lambda: port_open(self.host, self.port), timeout=30, what="PostgreSQL", log_file=self.log_file)
        created = subprocess.run(
            [str(bin_dir / "psql"), "-h", self.host, "-p", str(self.port), "-U", DB_USER, "-d", "postgres",
             "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}'"],
            capture_output=True, text=True,
        )
        if created.stdout.strip() != "1":
            subprocess.run([str(bin_dir / "createdb"), "-h", self.host, "-p", str(self.port), "-U", DB_USER,
                            DB_NAME], check=True)

    def stop(self) -> bool:
        bin_dir = find_bin_dir()
        if bin_dir is None or not self.running():
            return False
        subprocess.run(self._as_owner(str(bin_dir / "pg_ctl"), "stop", "-D", str(self.data), "-m", "fast", "-w"),
                       capture_output=True)
        return True

    def dsn(self, database: str = DB_NAME) -> str:
        return f"postgresql://{DB_USER}@{self.host}:{self.port}/{database}"

    def address(self) -> str:
        return self.dsn()

    def env(self) -> dict[str, str]:
        return {"IG_DATABASE_URL": self.dsn()}
