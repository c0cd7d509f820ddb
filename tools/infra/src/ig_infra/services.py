"""The five services as local processes, started with the infra's connection settings."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from ig_common.authz import AuthorizationTable

from ig_infra.components.base import Component
from ig_infra.components.identities import AUTHZ_TABLE, Identities
from ig_infra.components.opa import opa_binary
from ig_infra.components.postgres import Postgres
from ig_infra.netns import namespace_of, port_open_in, wrapped
from ig_infra.paths import Paths
from ig_infra.pki import identities_directory
from ig_infra.process import InfraError, read_pid, spawn, terminate, wait_until
from ig_infra.witnesses import (
    WITNESSES,
    evidence_witnesses_env,
    portal_verification_env,
    witness_env,
    witness_verifier_key,
)


def policy_wasm_env(paths: Paths) -> dict[str, str]:
    """The policy directory OPA loads, compiled to Wasm at each start (``ig-policy wasm-build``): the bundle is stamped
    with that directory's revision, so a policy edited later (OPA's --watch reloads it) is answered by OPA until the
    next start, never by a stale module."""
    policies = Path(os.environ.get("IG_OPA_POLICIES", paths.repo / "policies" / "rego"))
    bundle = paths.component_dir("policy-wasm") / "policy.tar.gz"
    subprocess.run([sys.executable, "-m", "ig_policy.cli", "wasm-build", "--policies", str(policies),
                    "--out", str(bundle), "--opa", str(opa_binary(paths.cache))], check=True, capture_output=True)
    return {"IG_POLICY_WASM_BUNDLE": str(bundle)}


def tenant_residency_env(paths: Paths) -> dict[str, str]:
    """The policy data whose residency pins the portal and the evidence service serve by: the document the region's
    OPA loads, so they and ``ig.residency.cross_region`` read the same pins."""
    policies = Path(os.environ.get("IG_OPA_POLICIES", paths.repo / "policies" / "rego"))
    return {"IG_TENANT_RESIDENCY_FILE": str(policies / "ig" / "config" / "data.json")}


def portal_env(paths: Paths) -> dict[str, str]:
    """The portal's verification pins, the residency pins and the tenants its access-log feed reads."""
    return {**portal_verification_env(paths), **tenant_residency_env(paths), **portal_feed_env()}


def portal_feed_env() -> dict[str, str]:
    """The tenants whose access entries the portal's access-log feed reads back from the ledger: those the
    authorization table lets the portal read on its own (``ledger_readers``), so the two never disagree here."""
    tenants = AuthorizationTable.load(AUTHZ_TABLE).ledger_tenants_readable_by("audit-portal")
    return {"IG_ACCESS_LOG_FEED_TENANTS": ",".join(sorted(tenants))}


def evidence_env(paths: Paths) -> dict[str, str]:
    """The witnesses the ledger's head checkpoints go to, and the residency pins."""
    return {**evidence_witnesses_env(paths), **tenant_residency_env(paths)}


# What `ig-infra services up --profile` accepts. `make up` starts the demo; production windows stay the default.
PROFILES = ("production", "demo")
# The services' own default IG_REGION (region-b's specs set theirs, ig_infra.regions).
DEFAULT_REGION = "region-a"


def burn_demo_env(paths: Paths, region: str) -> dict[str, str]:
    """The burn service's demo profile (ig_burn.devtools.demo): every window divided by 86400 and the release flow's
    demo SLOs, named after the region (the shared Prometheus serves both regions' burn services and every test
    suite's). Written into the run dir at each start by the burn package itself (ig-infra imports no service)."""
    done = subprocess.run([sys.executable, "-m", "ig_burn.devtools.demo", "--suite-id", region,
                           "--slo-dir", str(paths.component_dir("burn-demo-slos"))],
                          check=True, capture_output=True, text=True)
    settings: dict[str, str] = json.loads(done.stdout)
    return settings


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    module: str
    http_port: int
    grpc_port: int | None = None
    # Listeners beyond health and gRPC: the setting that names each one's port -> the port. HTTPS APIs, and the
    # plain listeners a service keeps for product code and people (burn's OFREP and /burn page).
    extra_ports: dict[str, int] = field(default_factory=dict)
    plain_ports: dict[str, int] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)
    # Settings naming a directory of the service's own data: each gets a directory under IG_RUN_DIR, so that two
    # stacks on one machine (a developer's and a CI clone's) never share one.
    data_dirs: dict[str, str] = field(default_factory=dict)
    # Settings computed from the run dir when the process starts (key files made by the identities component).
    run_env: Callable[[Paths], dict[str, str]] | None = None
    # False: the process gets its identity (IG_IDENTITIES, IG_AUTHZ_TABLE) and nothing of the database or Kafka.
    uses_infra: bool = True
    # Settings of the demo profile (`ig-infra services up --profile demo`, what `make up` starts), from the run dir
    # and the region's name; None: the service runs the same in both profiles.
    demo_env: Callable[[Paths, str], dict[str, str]] | None = None
    # False: shared by both regions (the witnesses), on the host even when the regions run in network namespaces.
    regional: bool = True

    @property
    def health_port(self) -> int:
        """Where /healthz and /metrics are: IG_HEALTH_PORT when the service has one, else IG_HTTP_PORT."""
        return self.plain_ports.get("IG_HEALTH_PORT", self.http_port)


SERVICES: tuple[ServiceSpec, ...] = (
    # AuthZEN over HTTPS (client certificate + workload token), forward-auth over HTTPS (client certificate) on
    # 8092; /healthz and /metrics stay on plain 8081.
    # The decision log's write-ahead log (answered decisions until the writer has them in PostgreSQL) in the run dir,
    # so that a restarted `make up` replays what a killed one left. Decides in-process with the policy compiled to
    # Wasm, the OPA sidecar whenever the module cannot answer.
    ServiceSpec("policy", "ig_policy.app", http_port=8081, grpc_port=50051,
                extra_ports={"IG_AUTHZEN_PORT": 8091, "IG_FORWARD_AUTH_PORT": 8092},
                data_dirs={"IG_DECISION_LOG_WAL_DIR": "policy-wal"}, run_env=policy_wasm_env),
    # Each new head checkpoint goes to the witnesses below (IG_WITNESSES), which run before it. The ledger's tiles
    # and checkpoint (C2SP tlog-tiles) are plain and read-only on 8012: public by design. A tenant pinned to another
    # region than its IG_REGION is refused (IG_TENANT_RESIDENCY_FILE, as the portal's).
    ServiceSpec("evidence", "ig_evidence.app", http_port=8082, grpc_port=50052, plain_ports={"IG_PUBLIC_PORT": 8012},
                data_dirs={"IG_BLOB_STORE_PATH": "evidence-blobs"}, run_env=evidence_env),
    # /get-burn over HTTPS; OFREP and the /burn page plain and read-only; /healthz and /metrics on plain 8083.
    # In the demo profile every window is scaled (30 d lasts 30 s) and the release flow's demo SLOs are declared.
    ServiceSpec("burn", "ig_burn.app", http_port=8083, grpc_port=50053, extra_ports={"IG_API_PORT": 8093},
                plain_ports={"IG_PUBLIC_PORT": 8013}, extra_env={"IG_EXTERNAL_URL": "http://127.0.0.1:8013"},
                demo_env=burn_demo_env),
    # Run accepts a plan only with a signature by a key in this directory (ig_infra.approver lays it out). The
    # SLO-headroom gate asks the suite's own burn service (service assets-api: an SLO of the demo profile only, so
    # in production windows the gate fails closed, as it does whenever burn is unreachable).
    ServiceSpec("migration", "ig_migration.app", http_port=8084, grpc_port=50054,
                data_dirs={"IG_MIGRATION_APPROVERS": "migration-approvers",
                           # its reports at an absolute path in the run dir, where ig-release reads them
                           "IG_MIGRATION_ARTIFACTS_DIR": "migration-artifacts"},
                extra_env={"IG_BURN_GRPC": "127.0.0.1:50053"}),
    # The demo auditor downloads a whole release (about two dozen files) in one go.
    # Browsers on 8080; /healthz and /metrics apart on plain 8085.
    # The release page verifies each release against the ledger key, witnesses and contract pinned here.
    ServiceSpec("audit-portal", "ig_portal.app", http_port=8080, plain_ports={"IG_HEALTH_PORT": 8085},
                extra_env={"IG_RATE_DOWNLOADS_PER_MINUTE": "120"}, run_env=portal_env),
)

# The ledger's witnesses, one per region (ig_infra.witnesses): POST /add-checkpoint over HTTPS on the extra port.
WITNESS_SERVICES: tuple[ServiceSpec, ...] = tuple(
    ServiceSpec(w.process_name, "ig_evidence.witness", http_port=w.http_port,
                extra_ports={"IG_WITNESS_PORT": w.api_port}, run_env=partial(witness_env, w), uses_infra=False,
                regional=False)
    for w in WITNESSES)
# What `make up` starts, in order: the witnesses first, so that the ledger's first head is cosigned.
PROCESSES: tuple[ServiceSpec, ...] = WITNESS_SERVICES + SERVICES


def http_healthy(port: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
        return bool(json.loads(response.read())["status"] == "ok")


def grpc_healthy(port: int, paths: Paths) -> bool:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from ig_common.grpc_client import secure_channel
    from ig_common.tls import WorkloadCertificate

    # The gRPC port speaks mTLS only: ig-infra checks health as the operator identity it issued itself (from the
    # run dir, not from the caller's environment, which `make up` does not point at it).
    operator = WorkloadCertificate(identities_directory(paths.run) / "operator")
    with secure_channel(f"127.0.0.1:{port}", operator) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


class ServiceProcess:
    def __init__(self, spec: ServiceSpec, paths: Paths, profile: str = "production") -> None:
        if profile not in PROFILES:
            raise ValueError(f"profile: {profile!r} is none of {', '.join(PROFILES)}")
        self.spec = spec
        self.paths = paths
        self.profile = profile
        self.dir = paths.component_dir("services")
        self.log_file = self.dir / f"{spec.name}.log"
        self.pid_file = self.dir / f"{spec.name}.pid"
        self.profile_file = self.dir / f"{spec.name}.profile"

    def running(self) -> bool:
        return read_pid(self.pid_file) is not None

    def running_profile(self) -> str:
        """The profile the running process was started with (production when it left no record)."""
        recorded = self.profile_file.read_text().strip() if self.profile_file.exists() else ""
        return recorded if self.spec.demo_env is not None and recorded in PROFILES else "production"

    @property
    def netns(self) -> str | None:
        """The network namespace the service runs in (ig_infra.suite_network), None on the loopback layout."""
        return namespace_of(self.paths.run) if self.spec.regional else None

    def _ensure_free(self, port: int, setting: str) -> None:
        if port_open_in(self.netns, "127.0.0.1", port):
            raise InfraError(f"port 127.0.0.1:{port} for {self.spec.name} is already taken by another process; stop "
                             f"it or set {setting}")

    def _check_reachable(self, env: dict[str, str]) -> None:
        """Inside a namespace, every 127.0.0.1 port a setting names must listen there already (the region's own
        component or the bridge to the host's): a setting nothing forwards fails here, naming it, not later."""
        own = {self.spec.http_port, self.spec.grpc_port, *self.spec.extra_ports.values(),
               *self.spec.plain_ports.values()}
        for setting, value in env.items():
            for port in {int(p) for p in re.findall(r"(?:127\.0\.0\.1|localhost):(\d+)", value)} - own:
                if not port_open_in(self.netns, "127.0.0.1", port):
                    raise InfraError(f"{self.spec.name}: {setting} names 127.0.0.1:{port}, which nothing inside "
                                     f"{self.netns} listens on (add it to ig_infra.suite_bridge)")

    def healthy(self) -> bool:
        if not port_open_in(self.netns, "127.0.0.1", self.spec.health_port) \
                or not http_healthy(self.spec.health_port):
            return False
        return self.spec.grpc_port is None or grpc_healthy(self.spec.grpc_port, self.paths)

    def start(self, infra: list[Component]) -> None:
        if self.running() and self.healthy():
            if self.running_profile() == self.wanted_profile:
                return
            self.stop()  # started with the other profile: a demo must not run on production windows, nor back
        self._ensure_free(self.spec.http_port, "its IG_HTTP_PORT")
        env = {"IG_SERVICE_NAME": self.spec.name, "IG_HTTP_PORT": str(self.spec.http_port), **self.spec.extra_env}
        env.update({name: str(self.paths.component_dir(sub)) for name, sub in self.spec.data_dirs.items()})
        if self.spec.run_env is not None:
            env.update(self.spec.run_env(self.paths))
        env.update(self.profile_env())
        if self.spec.grpc_port is not None:
            self._ensure_free(self.spec.grpc_port, "its IG_GRPC_PORT")
            env["IG_GRPC_PORT"] = str(self.spec.grpc_port)
        for setting, port in {**self.spec.extra_ports, **self.spec.plain_ports}.items():
            self._ensure_free(port, f"its {setting}")
            env[setting] = str(port)
        for component in infra:
            if not self.spec.uses_infra and not isinstance(component, Identities):
                continue
            env.update(component.env())
            if isinstance(component, Postgres):
                # Its own roles (runtime + migrator), never the superuser's IG_DATABASE_URL that env() exports.
                env.update(component.service_env(self.spec.name))
        if self.netns:
            self._check_reachable(env)
        spawn(wrapped(self.netns, [sys.executable, "-m", self.spec.module]), log_file=self.log_file,
              pid_file=self.pid_file, env=env)
        self.profile_file.write_text(self.wanted_profile + "\n")
        wait_until(self.healthy, timeout=60, what=f"service {self.spec.name}", log_file=self.log_file,
                   alive=self.running)

    def profile_env(self) -> dict[str, str]:
        """The settings the wanted profile adds (the demo's, named after the service's region); none in production."""
        if self.wanted_profile != "demo" or self.spec.demo_env is None:
            return {}
        return self.spec.demo_env(self.paths, self.spec.extra_env.get("IG_REGION", DEFAULT_REGION))

    @property
    def wanted_profile(self) -> str:
        """The profile this process starts with: production for a service that has no demo settings."""
        return self.profile if self.spec.demo_env is not None else "production"

    def stop(self) -> bool:
        return terminate(self.pid_file)

    def address(self) -> str:
        grpc_part = f"grpc 127.0.0.1:{self.spec.grpc_port}, " if self.spec.grpc_port else ""
        extra = "".join(f", https https://127.0.0.1:{port} ({setting})"
                        for setting, port in self.spec.extra_ports.items())
        extra += "".join(f", http http://127.0.0.1:{port} ({setting})"
                         for setting, port in self.spec.plain_ports.items())
        demo = ", demo profile (every window / 86400)" if self.running_profile() == "demo" else ""
        return f"{grpc_part}http http://127.0.0.1:{self.spec.http_port}{extra}{demo}"


def running_witnesses_env(paths: Paths) -> dict[str, str]:
    """IG_WITNESS_VERIFIER_KEYS (comma separated) when `make up`'s witnesses run: the release flow then requires
    each one's cosignature on the checkpoint its verify kit carries."""
    running = [w for w, spec in zip(WITNESSES, WITNESS_SERVICES, strict=True) if ServiceProcess(spec, paths).running()]
    if len(running) != len(WITNESSES):
        return {}
    return {"IG_WITNESS_VERIFIER_KEYS": ",".join(witness_verifier_key(w, paths.run) for w in running)}
