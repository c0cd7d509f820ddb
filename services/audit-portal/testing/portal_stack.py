"""The real stack the portal's e2e tests and benchmark run against: Dex (+ its LDAP directory), the evidence
service as a subprocess on free ports, a bundle for v1.2.1 built with ``ig-evidence`` and registered for tenant
alpha, and portal processes. Nothing here is a stand-in: every call crosses a real socket to a real component.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ig.evidence.v1 import evidence_pb2, evidence_pb2_grpc
from ig_common.grpc_client import channel_as
from ig_infra.components.postgres import service_env_for
from ig_infra.process import free_port
from ig_infra.services import portal_feed_env

REPO = Path(__file__).resolve().parents[3]
# The residency pins the suite's OPA loads; a portal never starts without them.
POLICY_DATA = REPO / "policies" / "rego" / "ig" / "config" / "data.json"
RELEASE = "v1.2.1"
USERS = {
    "alpha-auditor": ("auditor@alpha.example", "alpha-auditor-pw"),
    "alpha-admin": ("admin@alpha.example", "alpha-admin-pw"),
    "beta-auditor": ("auditor@beta.example", "beta-auditor-pw"),
    "beta-admin": ("admin@beta.example", "beta-admin-pw"),
    "nobody": ("nobody@alpha.example", "nobody-pw"),
}
EVIDENCE_TYPES = ["load-report", "chaos-report", "aca-report", "dr-log", "rtbf-log", "residency-proof", "slo-report",
                  "decision-coverage", "multi-region", "migration-timeline"]



def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def start(name: str, args: list[str], env: dict[str, str], health_url: str, logs: Path,
          timeout: float = 60) -> Process:
    log = logs / f"{name}.log"
    with open(log, "wb") as out:
        popen = subprocess.Popen(args, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)
    process = Process(name, popen, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise RuntimeError(f"{name} exited with {popen.returncode}:\n{process.tail()}")
        with contextlib.suppress(OSError):
            if http_status(health_url) == 200:
                return process
        time.sleep(0.2)
    process.stop()
    raise RuntimeError(f"{name} not healthy after {timeout}s:\n{process.tail()}")


def dex_token(issuer: str, user: str, *, client_id: str = "audit-api", client_secret: str = "") -> str:
    """An ID token for a directory user through Dex's password grant (how API clients and scripts sign in)."""
    email, password = USERS[user]
    form = urllib.parse.urlencode({"grant_type": "password", "username": email, "password": password,
                                   "scope": "openid email profile groups", "client_id": client_id,
                                   "client_secret": client_secret}).encode()
    request = urllib.request.Request(f"{issuer}/token", data=form, method="POST",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(json.loads(response.read())["id_token"])


def write_inputs(root: Path) -> Path:
    """Evidence of every type; a few in the forms whose watermarks differ (CSV, text, PDF, binary)."""
    from pypdf import PdfWriter

    for kind in EVIDENCE_TYPES:
        (root / kind).mkdir(parents=True, exist_ok=True)
        (root / kind / f"{kind}.json").write_text(json.dumps({"type": kind, "ok": True}) + "\n")
    (root / "slo-report" / "slo-summary.csv").write_text("slo,objective,achieved\navailability,99.9,99.95\n")
    (root / "dr-log" / "dr-drill.txt").write_text("2026-01-01T00:00:00Z failover region-a -> region-b ok\n")
    (root / "chaos-report" / "chaos-trace.bin").write_bytes(bytes(range(256)) * 16)
    writer = PdfWriter()
    writer.add_blank_page(595, 842)
    with open(root / "aca-report" / "aca-report.pdf", "wb") as out:
        writer.write(out)
    return root


@dataclass
class Stack:
    issuer: str
    database_url: str
    evidence_grpc: str
    work: Path
    keys: Path
    processes: list[Process] = field(default_factory=list)
    # a portal's base URL -> where its /healthz and /metrics are (a port apart from what browsers reach)
    health_urls: dict[str, str] = field(default_factory=dict)

    def portal(self, name: str, database_url: str | None = None, **settings: str) -> tuple[Process, str]:
        """Start a portal process; returns it and its base URL (http://localhost:<port>)."""
        port, health_port = free_port(), free_port()
        env = {"IG_HTTP_PORT": str(port), "IG_HEALTH_PORT": str(health_port),
               **service_env_for(database_url or self.database_url, "audit-portal"),
               "IG_EVIDENCE_TARGET": self.evidence_grpc, "IG_OIDC_ISSUER": self.issuer,
               "IG_PUBLIC_URL": f"http://localhost:{port}", "IG_LINK_SECRET": "e2e-" + "k" * 40,
               "IG_LOG_LEVEL": "WARNING", "IG_TENANT_RESIDENCY_FILE": str(POLICY_DATA), **portal_feed_env(),
               **{f"IG_{k.upper()}": v for k, v in settings.items()}}
        process = start(name, [sys.executable, "-m", "ig_portal.app"], env,
                        f"http://127.0.0.1:{health_port}/healthz", self.work)
        self.processes.append(process)
        self.health_urls[f"http://localhost:{port}"] = f"http://127.0.0.1:{health_port}"
        return process, f"http://localhost:{port}"

    def metrics(self, portal: str) -> str:
        with urllib.request.urlopen(f"{self.health_urls[portal]}/metrics", timeout=10) as response:
            return str(response.read().decode())

    def token(self, user: str) -> str:
        return dex_token(self.issuer, user)


def start_dex() -> str:
    """The shared Dex if it runs this tree's client list; else a private Dex (and directory) for this session.

    The shared one keeps the configuration it was started with; one started before the `audit-api` client was
    added to tools/infra/dex/config.yaml would refuse every API token request. Other sessions use the shared Dex,
    so it is never restarted from here."""
    from ig_infra.components import Dex
    from ig_infra.paths import Paths

    dex = Dex(Paths.from_environment())
    if not dex.healthy():
        dex.install()
        dex.start()
    if knows_client(dex.issuer, "audit-api"):
        return dex.issuer
    return _private_dex()


def knows_client(issuer: str, client_id: str) -> bool:
    try:
        dex_token(issuer, "alpha-auditor", client_id=client_id)
    except urllib.error.HTTPError as error:
        if error.code in (400, 401):
            return False
        raise
    return True


_PRIVATE_DEX: list[str] = []


def _private_dex() -> str:
    import atexit

    from ig_infra.components import Dex
    from ig_infra.paths import Paths

    if _PRIVATE_DEX:
        return _PRIVATE_DEX[0]
    shared = Paths.from_environment()
    run = Path(tempfile.mkdtemp(prefix="ig-portal-dex-", dir="/var/tmp"))
    run.chmod(0o755)
    dex = Dex(Paths(cache=shared.cache, run=run), port=free_port(), ldap_port=free_port(),
              telemetry_port=free_port())
    dex.install()
    atexit.register(shutil.rmtree, run, ignore_errors=True)  # atexit runs last-in first: after the stop
    dex.start()
    atexit.register(dex.stop)
    _PRIVATE_DEX.append(dex.issuer)
    return dex.issuer


def register(evidence_grpc: str, archive: Path, release: str, tenant: str) -> evidence_pb2.RegisterBundleResponse:
    def parts() -> Iterator[evidence_pb2.RegisterBundleRequest]:
        yield evidence_pb2.RegisterBundleRequest(header=evidence_pb2.BundleHeader(release=release, tenant=tenant))
        with open(archive, "rb") as handle:
            while chunk := handle.read(1 << 20):
                yield evidence_pb2.RegisterBundleRequest(chunk=chunk)

    with channel_as("release", evidence_grpc) as channel:
        stub = evidence_pb2_grpc.EvidenceServiceStub(channel)
        return stub.RegisterBundle(parts(), timeout=600)  # a bundle with a 1 GiB artifact takes a while


def build_and_register(stack: Stack, release: str, inputs: Path, tenant: str = "alpha") -> Path:
    """Build ``release`` from ``inputs`` with ``ig-evidence``, signed with the stack's pinned key, and register it
    for ``tenant``; returns the bundle's directory."""
    cli = [str(Path(sys.executable).parent / "ig-evidence")]
    out = stack.work / f"bundle-{release}" if release != RELEASE else stack.work / "bundle"
    built = subprocess.run([*cli, "build", "--release", release, "--inputs", str(inputs), "--out", str(out),
                            "--key", str(stack.keys / "cosign.key"), "--ledger", stack.evidence_grpc,
                            "--tenant", tenant, "--repo-root", str(REPO)],
                           capture_output=True, text=True, env={**os.environ, "SOURCE_DATE_EPOCH": "1767225600"},
                           cwd=REPO)
    if built.returncode != 0:
        raise RuntimeError(f"ig-evidence build failed:\n{built.stdout}\n{built.stderr}")
    register(stack.evidence_grpc, out / f"evidence-{release}.tar.gz", release, tenant)
    return out


@contextlib.contextmanager
def running_stack(database_url: str, kafka_bootstrap: str,
                  evidence_settings: dict[str, str] | None = None) -> Iterator[Stack]:
    """Dex, the evidence service with alpha's v1.2.1 registered; portals are started per test module.
    ``evidence_settings``: more IG_* variables for the evidence service (e.g. its ledger key and witnesses)."""
    issuer = start_dex()
    work = Path(tempfile.mkdtemp(prefix="ig-portal-e2e-"))
    http_port, grpc_port = free_port(), free_port()
    cli = [str(Path(sys.executable).parent / "ig-evidence")]
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1767225600"}
    # The release key, pinned for alpha before the service starts: it accepts bundles of pinned signers only.
    keys, signers = work / "keys", work / "trusted-signers.yaml"
    subprocess.run([*cli, "keygen", "--out", str(keys)], check=True, capture_output=True, env=env)
    subprocess.run([*cli, "trust", str(keys / "cosign.pub"), "--signers", str(signers), "--tenant", "alpha",
                    "--name", "portal e2e release key"], check=True, capture_output=True, env=env)
    evidence_env = {"IG_HTTP_PORT": str(http_port), "IG_GRPC_PORT": str(grpc_port), "IG_PUBLIC_PORT": str(free_port()),
                    **service_env_for(database_url, "evidence"),
                    "IG_KAFKA_BOOTSTRAP": kafka_bootstrap, "IG_BLOB_STORE_PATH": str(work / "blobs"),
                    "IG_TRUSTED_SIGNERS_PATH": str(signers), "IG_TENANT_RESIDENCY_FILE": str(POLICY_DATA),
                    "IG_LOG_LEVEL": "WARNING", **(evidence_settings or {})}
    os.environ["IG_KAFKA_BOOTSTRAP"] = kafka_bootstrap
    evidence = start("evidence", [sys.executable, "-m", "ig_evidence.app"], evidence_env,
                     f"http://127.0.0.1:{http_port}/healthz", work)
    stack = Stack(issuer, database_url, f"127.0.0.1:{grpc_port}", work, keys, [evidence])
    try:
        build_and_register(stack, RELEASE, write_inputs(work / "inputs"))
        yield stack
    finally:
        for process in reversed(stack.processes):
            process.stop()
        # The blob store can hold a 1 GiB artifact (the large-download test): each run left 1.3-1.6 GB behind.
        shutil.rmtree(work, ignore_errors=True)


_SHARED: dict[str, Stack] = {}
_EXIT = contextlib.ExitStack()


def shared_stack(database_url: str, kafka_bootstrap: str) -> Stack:
    """One stack per test session, shared by the portal's e2e modules (building the bundle is the slow part);
    it is stopped when the session's interpreter exits."""
    if database_url not in _SHARED:
        if not _SHARED:
            import atexit

            atexit.register(_EXIT.close)
        _SHARED[database_url] = _EXIT.enter_context(running_stack(database_url, kafka_bootstrap))
    return _SHARED[database_url]


@contextlib.contextmanager
def bench_stack(database_prefix: str) -> Iterator[Stack]:
    """A benchmark's own stack on the shared infrastructure (`ig-infra up`): its identities exported, a fresh
    database (dropped afterwards, whatever happens) and ``running_stack`` on it."""
    import uuid

    from ig_infra.components import Identities, Kafka, Postgres
    from ig_infra.paths import Paths

    paths = Paths.from_environment()
    postgres, kafka, identities = Postgres(paths), Kafka(paths), Identities(paths)
    identities.start()
    os.environ.update(identities.env())
    database = f"{database_prefix}_{uuid.uuid4().hex[:8]}"
    postgres.provision(database)
    try:
        with running_stack(postgres.dsn(database), kafka.bootstrap) as stack:
            yield stack
    finally:
        postgres.admin_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)', transaction=False)


def write_bench_result(name: str, result: dict[str, object]) -> Path:
    """A benchmark's figures as ``$ARTIFACTS/bench/<name>.json`` (make bench's layout); returns the path."""
    out = Path(os.environ.get("ARTIFACTS", "artifacts")) / "bench" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return out


def ledger_access_entries(evidence_grpc: str, tenants: tuple[str, ...] = ("alpha", "beta")) -> list[Any]:
    """The ledger's access entries of ``tenants``, in seq order, read as the portal's feed reads them: as the portal
    itself, one tenant per List (the ledger returns a tenant's entries only; the table's ledger_readers grant)."""
    from ig.ledger.v1 import ledger_pb2, ledger_pb2_grpc

    entries: list[Any] = []
    with channel_as("audit-portal", evidence_grpc) as channel:
        stub = ledger_pb2_grpc.LedgerServiceStub(channel)
        for tenant in tenants:
            entries += stub.List(ledger_pb2.ListRequest(kind="ig.audit.access", page_size=1000, tenant=tenant),
                                 timeout=10).entries
    return sorted(entries, key=lambda e: e.seq)


def readable_access(payload: bytes) -> bool:
    """Whether a ledger entry of the access kind is an access entry (tests forge some that are not)."""
    from ig_portal.domain.access import AccessEntry, UnreadableEntry

    try:
        AccessEntry.from_payload(payload)
    except UnreadableEntry:
        return False
    return True
