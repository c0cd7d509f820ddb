"""The services the flow talks to, started as real processes on free ports (tests; `make up` starts its own).

Policy (against the shared OPA), evidence (ledger + blob store), the audit portal (against the shared Dex) and, when
the producing stages will run, the burn service (the demo profile, against the shared Prometheus) and the migration
service (whose SLO-headroom gate asks that burn service), each ``python -m <service>`` with the suite's IG_*
settings, stopped on exit.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from ig_common.tls import inherited_identity
from ig_infra.process import free_port
from ig_infra.services import portal_feed_env


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@contextmanager
def service(module: str, env: dict[str, str], log: Path, http_port: int, timeout: float = 60) -> Iterator[None]:
    """``python -m module`` on ``http_port``; /healthz is checked on IG_HEALTH_PORT when ``env`` sets one."""
    inherited = {**{k: v for k, v in os.environ.items() if not k.startswith("IG_")}, **inherited_identity()}
    health_port = env.get("IG_HEALTH_PORT", str(http_port))
    with log.open("ab") as out:
        process = subprocess.Popen([sys.executable, "-m", module], env={**inherited, **env,
                                   "IG_HTTP_PORT": str(http_port), "OTEL_TRACES_EXPORTER": "none"},
                                   stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while not healthy(f"http://127.0.0.1:{health_port}/healthz"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{module} did not become healthy:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        yield
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def local_suite(base: dict[str, str], work: Path, *, producing: bool = True) -> Iterator[dict[str, str]]:
    """Start policy, evidence, portal and (``producing``: the flow's burn and migration stages will run) the burn
    and migration services; yield the IG_* variables that point ig-release at them.

    ``base`` holds IG_DATABASE_URL (the superuser's: each service gets its own roles in that database),
    IG_KAFKA_BOOTSTRAP, IG_OPA_URL, IG_OPA_TOKEN_FILE (OPA's API answers only the
    bearer of its token), IG_OIDC_ISSUER, IG_IDENTITIES, IG_AUTHZ_TABLE and IG_TRUSTED_SIGNERS_PATH (the release
    key pinned for the release's tenants)."""
    work.mkdir(parents=True, exist_ok=True)
    from ig_infra.components.postgres import service_env_for
    from ig_infra.paths import REPO_ROOT, Paths
    from ig_infra.services import tenant_residency_env

    common = {k: base[k] for k in ("IG_KAFKA_BOOTSTRAP", "IG_IDENTITIES", "IG_AUTHZ_TABLE")}
    residency = tenant_residency_env(Paths.from_environment())  # the pins the OPA the suite's policy asks loads

    def database(service: str) -> dict[str, str]:
        # each service as its own runtime and migrator roles in the suite's database, never as the superuser
        return service_env_for(base["IG_DATABASE_URL"], service)

    with ExitStack() as stack:
        policy_grpc, evidence_grpc, portal_port = free_port(), free_port(), free_port()
        stack.enter_context(service("ig_policy.app", {**common, **database("policy"),
                                                      "IG_OPA_URL": base["IG_OPA_URL"],
                                                      "IG_OPA_TOKEN_FILE": base["IG_OPA_TOKEN_FILE"],
                                                      # the decision log's pepper and replay public key
                                                      "IG_DECISION_LOG_PEPPER_FILE":
                                                          base["IG_DECISION_LOG_PEPPER_FILE"],
                                                      "IG_DECISION_LOG_INPUT_KEY_FILE":
                                                          base["IG_DECISION_LOG_INPUT_KEY_FILE"],
                                                      "IG_GRPC_PORT": str(policy_grpc),
                                                      "IG_AUTHZEN_PORT": str(free_port()),
                                                      "IG_FORWARD_AUTH_PORT": str(free_port()),
                                                      "IG_DECISION_LOG_WAL_DIR": str(work / "policy-wal"),
                                                      # a shared 2-core CI box: OPA's p99 exceeds 50 ms at times
                                                      "IG_OPA_TIMEOUT_MS": "5000"},
                                    work / "policy.log", free_port()))
        stack.enter_context(service("ig_evidence.app", {**common, **residency, **database("evidence"),
                                                        "IG_GRPC_PORT": str(evidence_grpc),
                                                        "IG_PUBLIC_PORT": str(free_port()),
                                                        "IG_BLOB_STORE_PATH": str(work / "blobs"),
                                                        "IG_TRUSTED_SIGNERS_PATH": base["IG_TRUSTED_SIGNERS_PATH"]},
                                    work / "evidence.log", free_port()))
        stack.enter_context(service("ig_portal.app", {
            **common, **residency, **portal_feed_env(), **database("audit-portal"),
            "IG_EVIDENCE_TARGET": f"127.0.0.1:{evidence_grpc}",
            "IG_OIDC_ISSUER": base["IG_OIDC_ISSUER"],
            "IG_HEALTH_PORT": str(free_port()),
            "IG_PUBLIC_URL": f"http://localhost:{portal_port}", "IG_LINK_SECRET": "release-flow-" + "k" * 40,
            "IG_RATE_REQUESTS_PER_MINUTE": "6000", "IG_RATE_DOWNLOADS_PER_MINUTE": "600",
            # the release page decides completeness item by item against the contract the release is built with
            "IG_EVIDENCE_CONTRACTS": str(REPO_ROOT / "policies" / "evidence" / "release-contract.v1.yaml")},
            work / "portal.log", portal_port))
        endpoints = {"IG_POLICY_GRPC": f"127.0.0.1:{policy_grpc}", "IG_EVIDENCE_GRPC": f"127.0.0.1:{evidence_grpc}",
                     "IG_PORTAL_URL": f"http://localhost:{portal_port}"}
        if producing:
            endpoints.update(stack.enter_context(burn_service(common, database("burn"), work)))
            endpoints.update(stack.enter_context(migration_service(common, database("migration"), work,
                                                                   endpoints["IG_BURN_GRPC"])))
        yield {**base, **endpoints}


@contextmanager
def burn_service(common: dict[str, str], database: dict[str, str], work: Path) -> Iterator[dict[str, str]]:
    """The suite's burn service in the demo profile (ig_burn.devtools.demo: windows / 86400, the flow's demo SLOs)
    against the shared Prometheus, which also scrapes its /metrics (a file_sd target: the alert rules, such as
    BurnThrottleEngaged, then see it). The suite id is random: the shared Prometheus serves every suite on the
    machine (`make up`'s regions are region-a and region-b), so no two share SLO or job names. Only the demo SLOs:
    the packaged ones measure the `policy`, `evidence` ... jobs, which are `make up`'s services, not this suite's."""
    from ig_burn.devtools.demo import DemoNames, demo_settings
    from ig_infra.components.prometheus import Prometheus
    from ig_infra.paths import Paths

    prometheus = Prometheus(Paths.from_environment())
    if not prometheus.healthy():  # started like the tests' fixtures start PostgreSQL, Kafka and OPA; kept running
        prometheus.install()
        prometheus.start()
    names = DemoNames(f"suite-{secrets.token_hex(4)}")
    http_port, grpc_port, api_port, public_port = free_port(), free_port(), free_port(), free_port()
    prometheus.add_exporter(names.burn_metrics_job, f"127.0.0.1:{http_port}")
    try:
        with service("ig_burn.app", {**common, **database, **demo_settings(names, work / "burn-slos", packaged=False),
                                     "IG_PROMETHEUS_URL": prometheus.address(), "IG_GRPC_PORT": str(grpc_port),
                                     "IG_API_PORT": str(api_port), "IG_PUBLIC_PORT": str(public_port),
                                     "IG_EXTERNAL_URL": f"http://127.0.0.1:{public_port}"},
                     work / "burn.log", http_port):
            yield {"IG_BURN_GRPC": f"127.0.0.1:{grpc_port}", "IG_BURN_API": f"https://127.0.0.1:{api_port}",
                   "IG_BURN_PUBLIC_URL": f"http://127.0.0.1:{public_port}", "IG_BURN_DEMO_ID": names.suite_id,
                   "IG_PROMETHEUS_URL": prometheus.address()}
    finally:
        prometheus.remove_exporter(names.burn_metrics_job)


@contextmanager
def migration_service(common: dict[str, str], database: dict[str, str], work: Path,
                      burn_grpc: str) -> Iterator[dict[str, str]]:
    """The migration service on the suite's database (it migrates the database it keeps its state in): plans run
    only with a signature of the local `approver` (the run dir's approvers directory), and its SLO-headroom gate asks
    the suite's burn service (``burn_grpc``; unreachable or stale, the gate fails closed)."""
    from ig_infra.approver import ensure_approver_signing_key
    from ig_infra.paths import Paths

    grpc_port = free_port()
    with service("ig_migration.app", {**common, **database, "IG_GRPC_PORT": str(grpc_port),
                                      "IG_BURN_GRPC": burn_grpc,
                                      "IG_MIGRATION_APPROVERS": str(ensure_approver_signing_key(
                                          Paths.from_environment().run)),
                                      "IG_MIGRATION_ARTIFACTS_DIR": str(work / "migration-artifacts")},
                 work / "migration.log", free_port()):
        yield {"IG_MIGRATION_GRPC": f"127.0.0.1:{grpc_port}"}
