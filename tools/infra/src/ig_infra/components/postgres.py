"""PostgreSQL 15 from Debian's packages on a project-owned data directory and port: TLS only, least privilege.

Every TCP connection is TLS (``hostssl``) and authenticates with a client certificate of the development CA
(``cert``): the certificate's CN is the workload name, and ``pg_ident.conf`` says which roles each workload may log
in as. Each service has a runtime role (DML in its own schema, nothing else) and a migrator role (owns that schema,
runs its migrations); none is a superuser. The superuser ``ig`` is reached only with the ``ig-admin`` certificate
that ig-infra issues into this component's directory (tests that inspect or tamper with tables use it), or over the
Unix socket by the OS user ``postgres``.
"""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

from cryptography import x509

from ig_infra.components.base import Component, env_port
from ig_infra.pki import (
    LOCAL_ADDRESSES,
    LOCAL_NAMES,
    RENEW_AFTER,
    DevCA,
    IssuedIdentity,
    ca_directory,
    identities_directory,
    spiffe_id,
)
from ig_infra.prereqs import apt_install
from ig_infra.process import InfraError, tail, wait_until

PG_MAJOR = "15"
DB_USER = "ig"  # the bootstrap superuser: ig-infra and tests only, never a service
DB_NAME = "ig"
ADMIN_IDENTITY = "ig-admin"
SERVER_IDENTITY = "postgres"
# Owns the ledger's tables in every evidence schema; nobody logs in as it (see the evidence README).
LEDGER_OWNER = "ig_ledger_owner"
# The schemas the migration service's plans change (the demo workload's table lives in public, its view in app).
MIGRATION_TARGET_SCHEMAS = ("public", "app")
# A data directory laid out before per-service roles and TLS: its schemas belong to the old superuser.
_LAYOUT_MARKER = "ig-roles-v1"


@dataclass(frozen=True)
class ServiceRoles:
    """One service's database identity: which certificate (workload) logs in as which roles, owning which schema."""

    service: str
    schema: str

    @property
    def runtime(self) -> str:
        return "ig_" + self.service.replace("-", "_")

    @property
    def migrator(self) -> str:
        return self.runtime + "_migrator"


SERVICE_ROLES: dict[str, ServiceRoles] = {r.service: r for r in (
    ServiceRoles("policy", "policy"),
    ServiceRoles("evidence", "evidence"),
    ServiceRoles("burn", "burn"),
    ServiceRoles("migration", "migration"),
    ServiceRoles("audit-portal", "portal"),
)}


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


# Pods of the real Kubernetes nodes (tools/k8s/README.md) reach this server when IG_PG_POD_ADDRESSES names the
# host's end of each node's link (10.250.N.1): PostgreSQL listens there too, admits TLS client certificates from the
# nodes' links and pod subnets (kube-proxy masquerades Service traffic to the node's uplink address), and its
# certificate carries the name the charts dial (charts/values-region-*.yaml).
POD_ADDRESSES_VARIABLE = "IG_PG_POD_ADDRESSES"
POD_SOURCES = ("10.250.0.0/16", "10.244.0.0/16")
POD_NAMES = ("postgresql.ig-data.svc.cluster.local", "postgresql.ig-data.svc")


def pod_addresses() -> tuple[str, ...]:
    import ipaddress

    raw = os.environ.get(POD_ADDRESSES_VARIABLE, "")
    found = tuple(part.strip() for part in raw.split(",") if part.strip())
    for address in found:
        try:
            ipaddress.IPv4Address(address)
        except ValueError:
            raise InfraError(f"{POD_ADDRESSES_VARIABLE}: {address!r} is not an IPv4 address") from None
    return found


def hba_conf(pod_sources: tuple[str, ...] = ()) -> str:
    return "\n".join([
        "# Written by ig-infra at every start; edits are lost. No trust, no passwords: TLS client certificates.",
        "# TYPE   DATABASE  USER  ADDRESS       METHOD",
        "local    all       all                 peer map=local",
        "hostssl  all       all   127.0.0.1/32  cert map=workloads",
        "hostssl  all       all   ::1/128       cert map=workloads",
        *(f"hostssl  all       all   {source}  cert map=workloads" for source in pod_sources),
        "# Anything else, plaintext TCP above all, matches no line and is refused.",
        "",
    ])


def ident_conf() -> str:
    lines = ["# Written by ig-infra: certificate CN (workload) -> the roles it may log in as.",
             f"local      postgres        {DB_USER}",
             f"workloads  {ADMIN_IDENTITY:<14}  {DB_USER}"]
    for roles in SERVICE_ROLES.values():
        lines += [f"workloads  {roles.service:<14}  {roles.runtime}",
                  f"workloads  {roles.service:<14}  {roles.migrator}"]
    return "\n".join(lines) + "\n"


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def roles_sql() -> str:
    """Idempotent: creates what is missing and re-asserts every attribute (a role changed by hand is put back)."""
    statements = []
    plain = "NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
    wanted = [(LEDGER_OWNER, "NOLOGIN")]
    for roles in SERVICE_ROLES.values():
        wanted += [(roles.runtime, "LOGIN"), (roles.migrator, "LOGIN")]
    for name, login in wanted:
        statements.append(
            f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {_literal(name)}) THEN "
            f"CREATE ROLE {name}; END IF; END $$;")
        statements.append(f"ALTER ROLE {name} {login} {plain} INHERIT;")
    # The evidence migrator creates the ledger tables and hands them to their owner (evidence's 0004 migration).
    statements.append(f"GRANT {LEDGER_OWNER} TO {SERVICE_ROLES['evidence'].migrator};")
    # The migration gates read load, replication lag, the data directory's volume and statement statistics.
    statements.append(f"GRANT pg_monitor TO {SERVICE_ROLES['migration'].runtime};")
    return "\n".join(statements)


def database_sql(database: str) -> str:
    """Run inside ``database``: who may connect, and each service's schema owned by its migrator."""
    service_roles = [name for r in SERVICE_ROLES.values() for name in (r.runtime, r.migrator)]
    statements = [f'REVOKE ALL ON DATABASE "{database}" FROM PUBLIC;',
                  f'GRANT CONNECT ON DATABASE "{database}" TO {", ".join(service_roles)};',
                  "REVOKE ALL ON SCHEMA public FROM PUBLIC;",
                  # Not a trusted extension: a superuser creates it (the migration service's ACA reads it).
                  "CREATE EXTENSION IF NOT EXISTS pg_stat_statements;"]
    for roles in SERVICE_ROLES.values():
        statements.append(f"CREATE SCHEMA IF NOT EXISTS {roles.schema} AUTHORIZATION {roles.migrator};")
        statements.append(f"ALTER SCHEMA {roles.schema} OWNER TO {roles.migrator};")
        # What the migrator creates there, the runtime role may read and write, whoever runs the migrations as
        # the migrator (the service at start-up, or a superuser acting as the schema's owner: ig_common.db).
        statements.append(f"GRANT USAGE ON SCHEMA {roles.schema} TO {roles.runtime};")
        for objects, rights in (("TABLES", "SELECT, INSERT, UPDATE, DELETE"), ("SEQUENCES", "USAGE, SELECT")):
            statements.append(f"ALTER DEFAULT PRIVILEGES FOR ROLE {roles.migrator} IN SCHEMA {roles.schema} "
                              f"GRANT {rights} ON {objects} TO {roles.runtime};")
    # A plan's SQL runs as the migration runtime role: it owns the target schemas and nothing else.
    migration = SERVICE_ROLES["migration"].runtime
    for schema in MIGRATION_TARGET_SCHEMAS:
        statements.append(f"CREATE SCHEMA IF NOT EXISTS {schema} AUTHORIZATION {migration};")
        statements.append(f"ALTER SCHEMA {schema} OWNER TO {migration};")
    return "\n".join(statements)


def with_database(dsn: str, database: str) -> str:
    """The same connection settings (role, TLS files) for another database."""
    parts = urlsplit(dsn)
    return parts._replace(path="/" + database).geturl()


def database_of(dsn: str) -> str:
    return urlsplit(dsn).path.lstrip("/")


def service_env_for(dsn: str, service: str) -> dict[str, str]:
    """``service``'s ``IG_DATABASE_URL`` (runtime role) and ``IG_MIGRATION_DATABASE_URL`` (migrator role) in the
    database ``dsn`` names, on the PostgreSQL of this environment's run dir: for a harness that starts a service
    outside pytest's ``infra`` fixture (a service never runs as the superuser). The database must be laid out by
    ``Postgres.provision`` (``infra.new_database()`` does)."""
    from ig_infra.paths import Paths

    return Postgres(Paths.from_environment()).service_env(service, database_of(dsn))


class Postgres(Component):
    name = "postgres"

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.port = env_port("IG_PG_PORT", 55432)
        self.host = "127.0.0.1"
        self.pod_addresses = pod_addresses()
        self.data = self.dir / "data"
        self.socket_dir = self.dir / "sock"
        self.server_tls = self.dir / "tls"
        self.admin_tls = self.dir / "admin"

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

    def _own(self, path: Path) -> None:
        if os.geteuid() == 0:
            shutil.chown(path, "postgres", "postgres")

    def running(self) -> bool:
        bin_dir = find_bin_dir()
        if bin_dir is None or not (self.data / "postmaster.pid").exists():
            return False
        status = subprocess.run(self._as_owner(str(bin_dir / "pg_ctl"), "status", "-D", str(self.data)),
                                capture_output=True)
        return status.returncode == 0

    def healthy(self) -> bool:
        return self.running() and self.listening(self.host, self.port) and self._identities_fresh()

    # -- certificates --------------------------------------------------------------------------------------
    def _ca(self) -> DevCA:
        return DevCA.load_or_create(ca_directory(self.paths.cache))

    @staticmethod
    def _fresh(issued: IssuedIdentity, ca: DevCA) -> bool:
        if not (issued.cert.exists() and issued.key.exists() and issued.ca.exists()):
            return False
        if issued.ca.read_bytes() != ca.cert_pem:
            return False
        cert = x509.load_pem_x509_certificate(issued.cert.read_bytes())
        return datetime.datetime.now(datetime.UTC) - cert.not_valid_before_utc < RENEW_AFTER

    def _identities_fresh(self) -> bool:
        ca = self._ca()
        return all(self._fresh(IssuedIdentity(name, directory, spiffe_id(name)), ca)
                   for name, directory in ((SERVER_IDENTITY, self.server_tls), (ADMIN_IDENTITY, self.admin_tls)))

    def _ensure_certificates(self) -> bool:
        """The server's certificate (owned by ``postgres``, key 0600, as PostgreSQL demands) and the admin's client
        certificate; renewed like the workloads'. True when either was (re)issued."""
        ca = self._ca()
        renewed = False
        for name, directory, owned in ((SERVER_IDENTITY, self.server_tls, True),
                                       (ADMIN_IDENTITY, self.admin_tls, False)):
            if self._fresh(IssuedIdentity(name, directory, spiffe_id(name)), ca):
                continue
            if owned and self.pod_addresses:
                issued = ca.issue(name, directory, dns_names=(*LOCAL_NAMES, *POD_NAMES),
                                  ip_addresses=(*LOCAL_ADDRESSES, *self.pod_addresses))
            else:
                issued = ca.issue(name, directory)
            if owned:
                for path in (directory, issued.cert, issued.key, issued.ca):
                    self._own(path)
            renewed = True
        return renewed

    def _write_auth_files(self) -> bool:
        changed = False
        sources = POD_SOURCES if self.pod_addresses else ()
        for file_name, text in (("pg_hba.conf", hba_conf(sources)), ("pg_ident.conf", ident_conf())):
            path = self.data / file_name
            if path.exists() and path.read_text() == text:
                continue
            temp = path.with_suffix(".tmp")
            temp.write_text(text)
            temp.chmod(0o600)
            self._own(temp)
            temp.replace(path)
            changed = True
        return changed

    # -- lifecycle -----------------------------------------------------------------------------------------
    def start(self) -> None:
        bin_dir = find_bin_dir()
        assert bin_dir is not None
        if self.running():
            self._check_layout()
            # Renewed certificates and rewritten auth files take effect on a reload, without dropping anyone; a
            # reload when nothing changed costs nothing and catches files renewed by an earlier, interrupted run.
            self._ensure_certificates()
            self._write_auth_files()
            self._run(str(bin_dir / "pg_ctl"), "reload", "-D", str(self.data))
            self.provision()
            return
        self.ensure_free(self.host, self.port, "IG_PG_PORT")
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            for path in (self.paths.run, self.dir):
                path.chmod(0o755)
            shutil.chown(self.dir, "postgres", "postgres")
            shutil.chown(self.socket_dir, "postgres", "postgres")
            self.log_file.touch()
            shutil.chown(self.log_file, "postgres", "postgres")
        if not (self.data / "PG_VERSION").exists():
            self._run(str(bin_dir / "initdb"), "-D", str(self.data), "-U", DB_USER, "--auth-local=peer",
                      "--auth-host=reject", "--encoding=UTF8", "--locale=C.UTF-8")
            self._run("touch", str(self.data / _LAYOUT_MARKER))
        self._check_layout()
        self._ensure_certificates()
        self._write_auth_files()
        options = " ".join([
            f"-p {self.port}", f"-k {self.socket_dir}",
            # Pods reach the host's addresses; inside a region's namespace there are none of those.
            f"-c listen_addresses={','.join((self.host, *(() if self.netns else self.pod_addresses)))}",
            "-c max_connections=400", "-c shared_buffers=256MB", "-c wal_level=logical",
            "-c shared_preload_libraries=pg_stat_statements", "-c max_wal_senders=10",
            "-c max_replication_slots=10",
            "-c ssl=on", f"-c ssl_cert_file={self.server_tls / 'tls.crt'}",
            f"-c ssl_key_file={self.server_tls / 'tls.key'}", f"-c ssl_ca_file={self.server_tls / 'ca.crt'}",
            "-c ssl_min_protocol_version=TLSv1.2",
        ])
        result = subprocess.run(
            self.in_region(self._as_owner(str(bin_dir / "pg_ctl"), "start", "-w", "-t", "60", "-D", str(self.data),
                                          "-l", str(self.log_file), "-o", options)),
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise InfraError(f"PostgreSQL did not start; see {self.log_file}\n{tail(self.log_file)}")
        wait_until(lambda: self.listening(self.host, self.port), timeout=30, what="PostgreSQL",
                   log_file=self.log_file)
        self.provision()

    def _check_layout(self) -> None:
        if (self.data / "PG_VERSION").exists() and not (self.data / _LAYOUT_MARKER).exists():
            raise InfraError(
                f"{self.data} was created before per-service roles and TLS (its schemas belong to the old "
                f"superuser); remove it and start again: ig-infra down postgres && rm -rf {self.data}")

    def admin_sql(self, sql: str, database: str = "postgres", *, transaction: bool = True) -> str:
        """Run SQL as the superuser over TLS with the admin certificate (psql; one transaction unless told)."""
        bin_dir = find_bin_dir()
        assert bin_dir is not None
        single = ["-1"] if transaction else []
        result = subprocess.run([str(bin_dir / "psql"), "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", *single,
                                 "-d", self.dsn(database), "-c", sql], capture_output=True, text=True)
        if result.returncode != 0:
            raise InfraError(f"psql as {DB_USER} on {database} failed:\n{result.stderr[-2000:]}")
        return result.stdout.strip()

    def provision(self, database: str = DB_NAME) -> None:
        """Roles (cluster-wide) and ``database`` with each service's schema: idempotent, run at every ``up``."""
        self.admin_sql(roles_sql())
        if self.admin_sql(f"SELECT 1 FROM pg_database WHERE datname = {_literal(database)}") != "1":
            self.admin_sql(f'CREATE DATABASE "{database}"', transaction=False)
        self.admin_sql(database_sql(database), database)

    def stop(self) -> bool:
        bin_dir = find_bin_dir()
        if bin_dir is None or not self.running():
            return False
        subprocess.run(self._as_owner(str(bin_dir / "pg_ctl"), "stop", "-D", str(self.data), "-m", "fast", "-w"),
                       capture_output=True)
        return True

    # -- connection strings --------------------------------------------------------------------------------
    def _dsn(self, role: str, database: str, tls: Path) -> str:
        query = "&".join(f"{key}={quote(str(value), safe='/')}" for key, value in (
            ("sslmode", "verify-full"), ("sslrootcert", tls / "ca.crt"), ("sslcert", tls / "tls.crt"),
            ("sslkey", tls / "tls.key")))
        return f"postgresql://{role}@{self.host}:{self.port}/{database}?{query}"

    def dsn(self, database: str = DB_NAME) -> str:
        """The superuser's: for ig-infra, a developer's shell and tests that inspect or tamper with tables."""
        return self._dsn(DB_USER, database, self.admin_tls)

    def service_dsn(self, service: str, database: str = DB_NAME, *, migrator: bool = False) -> str:
        """A service's runtime (or migrator) role, authenticated with the service's own workload certificate."""
        roles = SERVICE_ROLES[service]
        return self._dsn(roles.migrator if migrator else roles.runtime, database,
                         identities_directory(self.paths.run) / service)

    def service_env(self, service: str, database: str = DB_NAME) -> dict[str, str]:
        if service not in SERVICE_ROLES:
            return {}
        return {"IG_DATABASE_URL": self.service_dsn(service, database),
                "IG_MIGRATION_DATABASE_URL": self.service_dsn(service, database, migrator=True)}

    def address(self) -> str:
        return f"{self.host}:{self.port} (TLS, client certificates)"

    def env(self) -> dict[str, str]:
        return {"IG_DATABASE_URL": self.dsn()}
