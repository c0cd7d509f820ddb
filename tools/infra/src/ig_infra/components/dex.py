"""Dex (OpenID Connect provider) with an OpenLDAP directory holding the dev users and groups.

Dex's own static passwords carry no groups, and the audit portal takes tenant and role from groups, so Dex signs
people in against a real slapd loaded from ``tools/infra/dex/directory.ldif`` (reloaded at every start).
Dex itself is built from the Go module proxy (see ``dex_binary``).
"""

from __future__ import annotations

import json
import os
import shutil
import string
import subprocess
import tempfile
import urllib.request
from pathlib import Path

from ig_infra.components.base import Component, env_port
from ig_infra.go_tools import TOOLS
from ig_infra.prereqs import apt_install, require
from ig_infra.process import InfraError, ensure_port_free, port_open, read_pid, spawn, terminate, wait_until

SLAPD = Path("/usr/sbin/slapd")
SLAPADD = Path("/usr/sbin/slapadd")
LDAP_ADMIN_PASSWORD = "ig-dev-directory"  # a dev directory on loopback only
# Dex's go.mod replaces its api/v2 module with ./api/v2, which module zips leave out; build against the
# published api/v2 release of the same era instead (and with cgo: Dex's config code references sqlite3).
DEX_API_MODULE = "github.com/dexidp/dex/api/v2@v2.2.0"


def dex_binary(cache: Path) -> Path:
    module, version, package = TOOLS["dex"]
    target = cache / f"dex-{version}" / "bin" / "dex"
    if target.exists():
        return target
    require("go", "gcc")
    target.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CGO_ENABLED": "1", "GOFLAGS": "-mod=mod"}
    print(f"  building dex {version} with go build (first time only; several minutes) ...", flush=True)
    download = _go(["go", "mod", "download", "-json", f"{module}@{version}"], env, target.parent)
    source = Path(json.loads(download)["Dir"])
    with tempfile.TemporaryDirectory(prefix="dex-build-") as work:
        tree = Path(work) / "dex"
        shutil.copytree(source, tree)
        for path in tree.rglob("*"):
            path.chmod(path.stat().st_mode | 0o200)
        _go(["go", "mod", "edit", "-dropreplace", DEX_API_MODULE.split("@")[0], f"-require={DEX_API_MODULE}"],
            env, tree)
        _go(["go", "build", "-trimpath", "-o", str(target), f"./{package}"], env, tree)
    return target


def _go(args: list[str], env: dict[str, str], cwd: Path) -> str:
    result = subprocess.run(args, capture_output=True, text=True, env=env, cwd=cwd)
    if result.returncode != 0:
        raise InfraError(f"{' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


class Dex(Component):
    name = "dex"
    regional = False  # one identity provider for both regions

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.host = "127.0.0.1"
        self.port = env_port("IG_DEX_PORT", 5556)
        self.ldap_port = env_port("IG_DEX_LDAP_PORT", 5389)
        self.telemetry_port = env_port("IG_DEX_TELEMETRY_PORT", 5558)
        self.config_dir = Path(os.environ.get("IG_DEX_CONFIG_DIR", self.paths.repo / "tools" / "infra" / "dex"))
        self.ldap_dir = self.dir / "ldap"
        self.ldap_pid_file = self.dir / "slapd.pid"
        self.ldap_log = self.dir / "slapd.log"

    @property
    def issuer(self) -> str:
        return f"http://{self.host}:{self.port}/dex"

    def install(self) -> None:
        if not SLAPD.exists() or not shutil.which("ldapsearch"):
            apt_install("slapd", "ldap-utils")
        dex_binary(self.paths.cache)

    def rendered_config(self) -> str:
        values = {"host": self.host, "port": self.port, "ldap_port": self.ldap_port,
                  "telemetry_port": self.telemetry_port, "ldap_admin_password": LDAP_ADMIN_PASSWORD}
        return string.Template((self.config_dir / "config.yaml").read_text()).substitute(values)

    def start(self) -> None:
        config = self.dir / "config.yaml"
        # Dex reads its configuration (clients, connectors) once: a running Dex whose file differs from the tree's
        # (e.g. a client added) is restarted, or it would keep refusing the new client.
        current = config.read_text() if config.exists() else None
        if self.running() and self.healthy() and current == self.rendered_config():
            return
        self.stop()
        ensure_port_free(self.host, self.ldap_port, "Dex's LDAP directory", "IG_DEX_LDAP_PORT")
        ensure_port_free(self.host, self.port, "Dex", "IG_DEX_PORT")
        self._start_directory()
        config.write_text(self.rendered_config())
        spawn([str(dex_binary(self.paths.cache)), "serve", str(config)], log_file=self.log_file,
              pid_file=self.pid_file)
        wait_until(self.healthy, timeout=30, what="Dex", log_file=self.log_file, alive=self.running)

    def _start_directory(self) -> None:
        if self.ldap_dir.exists():
            shutil.rmtree(self.ldap_dir)
        data = self.ldap_dir / "data"
        data.mkdir(parents=True)
        conf = self.ldap_dir / "slapd.conf"
        conf.write_text("\n".join([
            *(f"include /etc/ldap/schema/{s}.schema" for s in ("core", "cosine", "inetorgperson", "nis")),
            "modulepath /usr/lib/ldap", "moduleload back_mdb",
            f"pidfile {self.ldap_dir / 'slapd.run.pid'}",
            "database mdb", "maxsize 104857600", 'suffix "dc=ig,dc=local"', 'rootdn "cn=admin,dc=ig,dc=local"',
            f"rootpw {LDAP_ADMIN_PASSWORD}", f"directory {data}",
            "access to attrs=userPassword by anonymous auth by * none", "access to * by * read", ""]))
        load = subprocess.run([str(SLAPADD), "-f", str(conf), "-l", str(self.config_dir / "directory.ldif")],
                              capture_output=True, text=True)
        if load.returncode != 0:
            raise InfraError(f"slapadd failed:\n{load.stderr[-2000:]}")
        # -d 0 keeps slapd in the foreground so the pid file names the process we own.
        spawn([str(SLAPD), "-d", "0", "-f", str(conf), "-h", f"ldap://{self.host}:{self.ldap_port}/"],
              log_file=self.ldap_log, pid_file=self.ldap_pid_file)
        wait_until(lambda: port_open(self.host, self.ldap_port), timeout=20, what="slapd (Dex's directory)",
                   log_file=self.ldap_log, alive=lambda: read_pid(self.ldap_pid_file) is not None)

    def running(self) -> bool:
        return read_pid(self.pid_file) is not None and read_pid(self.ldap_pid_file) is not None

    def healthy(self) -> bool:
        if not (port_open(self.host, self.port) and port_open(self.host, self.ldap_port)):
            return False
        with urllib.request.urlopen(f"{self.issuer}/.well-known/openid-configuration", timeout=2) as response:
            return bool(response.status == 200)

    def stop(self) -> bool:
        stopped_dex = terminate(self.pid_file)
        stopped_ldap = terminate(self.ldap_pid_file)
        return stopped_dex or stopped_ldap

    def address(self) -> str:
        return self.issuer

    def env(self) -> dict[str, str]:
        return {"IG_OIDC_ISSUER": self.issuer}
