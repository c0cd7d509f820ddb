"""Dex (OpenID Connect provider) with an OpenLDAP directory holding the dev users and groups.

Dex's own static passwords carry no groups, and the audit portal takes tenant and role from groups, so Dex signs
people in against a real slapd loaded from ``tools/infra/dex/directory.ldif`` (reloaded at every start).
Dex itself is built from the Go module proxy (see ``dex_binary``).

`make up`'s Dex is ``Dex(paths)``: plain HTTP on 127.0.0.1, its issuer that address, the ports from ``IG_DEX_*``.
A Dex for someone else's network (each Kubernetes region's, tools/k8s pod_infra.py) passes its listener, issuer,
TLS certificate and the portal's redirect URIs instead; its directory stays on loopback, Dex's alone.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import string
import subprocess
import tempfile
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from ig_infra.components.base import Component, env_port
from ig_infra.go_tools import TOOLS
from ig_infra.paths import Paths
from ig_infra.pki import IssuedIdentity
from ig_infra.prereqs import apt_install, require
from ig_infra.process import InfraError, ensure_port_free, port_open, read_pid, spawn, terminate, wait_until

SLAPD = Path("/usr/sbin/slapd")
SLAPADD = Path("/usr/sbin/slapadd")
LDAP_ADMIN_PASSWORD = "ig-dev-directory"  # a dev directory on loopback only
# Dex's go.mod replaces its api/v2 module with ./api/v2, which module zips leave out; build against the
# published api/v2 release of the same era instead (and with cgo: Dex's config code references sqlite3).
DEX_API_MODULE = "github.com/dexidp/dex/api/v2@v2.2.0"
# The browser sign-in client of tools/infra/dex/config.yaml (the audit portal's IG_OIDC_CLIENT_ID).
PORTAL_CLIENT = "audit-portal"


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

    def __init__(self, paths: Paths, *, host: str = "127.0.0.1", port: int | None = None,
                 ldap_port: int | None = None, telemetry_port: int | None = None, issuer: str | None = None,
                 tls: IssuedIdentity | None = None, redirect_uris: tuple[str, ...] = ()) -> None:
        """Without keywords, `make up`'s Dex. ``issuer`` defaults to ``http://host:port/dex``; with ``tls`` Dex
        serves HTTPS with that certificate (``tls.ca`` is what its health check trusts, so the certificate must
        also name ``host``); ``redirect_uris`` are registered for the portal's client, which then accepts only
        those (Dex accepts any ``http://localhost:<port>`` of a public client only while it names none)."""
        super().__init__(paths)
        self.host = host
        self.port = port if port is not None else env_port("IG_DEX_PORT", 5556)
        # The directory is Dex's alone: loopback, whatever address Dex serves on.
        self.ldap_host = "127.0.0.1"
        self.ldap_port = ldap_port if ldap_port is not None else env_port("IG_DEX_LDAP_PORT", 5389)
        self.telemetry_port = telemetry_port if telemetry_port is not None else env_port("IG_DEX_TELEMETRY_PORT", 5558)
        self._issuer = issuer
        self.tls = tls
        self.redirect_uris = redirect_uris
        self.config_dir = Path(os.environ.get("IG_DEX_CONFIG_DIR", self.paths.repo / "tools" / "infra" / "dex"))
        self.ldap_dir = self.dir / "ldap"
        self.ldap_pid_file = self.dir / "slapd.pid"
        self.ldap_log = self.dir / "slapd.log"

    @property
    def issuer(self) -> str:
        return self._issuer or f"http://{self.host}:{self.port}/dex"

    @property
    def local_url(self) -> str:
        """The issuer's URL at the address Dex listens on (its name may resolve only elsewhere, in a cluster)."""
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}{urlsplit(self.issuer).path}"

    def install(self) -> None:
        if not SLAPD.exists() or not shutil.which("ldapsearch"):
            apt_install("slapd", "ldap-utils")
        dex_binary(self.paths.cache)

    def rendered_config(self) -> str:
        values = {"host": self.host, "port": self.port, "ldap_host": self.ldap_host, "ldap_port": self.ldap_port,
                  "telemetry_port": self.telemetry_port, "ldap_admin_password": LDAP_ADMIN_PASSWORD}
        text = string.Template((self.config_dir / "config.yaml").read_text()).substitute(values)
        if self._issuer is None and self.tls is None and not self.redirect_uris:
            return text  # `make up`'s, exactly as the tree's file renders
        config = yaml.safe_load(text)
        config["issuer"] = self.issuer
        if self.tls is not None:
            config["web"] = {"https": f"{self.host}:{self.port}", "tlsCert": str(self.tls.cert),
                             "tlsKey": str(self.tls.key)}
        if self.redirect_uris:
            portal = next(client for client in config["staticClients"] if client["id"] == PORTAL_CLIENT)
            portal["redirectURIs"] = list(self.redirect_uris)
        return "# Rendered by ig-infra from tools/infra/dex/config.yaml\n" + yaml.safe_dump(config, sort_keys=False)

    def start(self) -> None:
        config = self.dir / "config.yaml"
        # Dex reads its configuration (clients, connectors) once: a running Dex whose file differs from the tree's
        # (e.g. a client added) is restarted, or it would keep refusing the new client.
        current = config.read_text() if config.exists() else None
        if self.running() and self.healthy() and current == self.rendered_config():
            return
        self.stop()
        ensure_port_free(self.ldap_host, self.ldap_port, "Dex's LDAP directory", "IG_DEX_LDAP_PORT")
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
        spawn([str(SLAPD), "-d", "0", "-f", str(conf), "-h", f"ldap://{self.ldap_host}:{self.ldap_port}/"],
              log_file=self.ldap_log, pid_file=self.ldap_pid_file)
        wait_until(lambda: port_open(self.ldap_host, self.ldap_port), timeout=20, what="slapd (Dex's directory)",
                   log_file=self.ldap_log, alive=lambda: read_pid(self.ldap_pid_file) is not None)

    def running(self) -> bool:
        return read_pid(self.pid_file) is not None and read_pid(self.ldap_pid_file) is not None

    def healthy(self) -> bool:
        """Both listen, and Dex's discovery document names this issuer (over TLS: verified with ``tls.ca``)."""
        if not (port_open(self.host, self.port) and port_open(self.ldap_host, self.ldap_port)):
            return False
        context = ssl.create_default_context(cafile=str(self.tls.ca)) if self.tls else None
        try:
            with urllib.request.urlopen(f"{self.local_url}/.well-known/openid-configuration", timeout=2,
                                        context=context) as response:
                return bool(response.status == 200 and json.load(response).get("issuer") == self.issuer)
        except (OSError, ValueError):  # refused, a TLS failure (old certificate), not JSON: not this Dex, healthy
            return False

    def stop(self) -> bool:
        stopped_dex = terminate(self.pid_file)
        stopped_ldap = terminate(self.ldap_pid_file)
        return stopped_dex or stopped_ldap

    def address(self) -> str:
        return self.issuer

    def env(self) -> dict[str, str]:
        return {"IG_OIDC_ISSUER": self.issuer}
