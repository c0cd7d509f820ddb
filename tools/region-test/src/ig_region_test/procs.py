"""Long-running processes of a region other than PostgreSQL: its Kafka broker, OPA and the policy service.

Each is started inside the region's namespace (``ip netns exec``) in its own session, with its own config,
data and log under the run directory. Cleanup does not depend on these objects: every process inside a
namespace is killed when the namespace is removed, and in loopback fallback the recorded process groups are.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ig_common.events.kafka_tls import client_security
from ig_infra.components.identities import Identities
from ig_infra.components.kafka import (
    BROKER_IDENTITY,
    KAFKA_VERSION,
    LOG4J,
    storage_format_command,
    tls_properties,
    write_keystore,
)
from ig_infra.components.opa import OpaToken, ensure_opa_token, locked_opa_arguments, opa_token_in
from ig_infra.go_tools import tool_path
from ig_infra.kafka_reading import identity_tls
from ig_infra.paths import Paths
from ig_infra.pki import ensure_identities, issue_for_addresses

from ig_region_test.network import RegionNet
from ig_region_test.runstate import RunState

KAFKA_PORT = 9092
KAFKA_CONTROLLER_PORT = 9093
# The drill's own Kafka clients (topic set-up, the outbox of its workload, the residency reader).
KAFKA_CLIENT_IDENTITY = "region-test"
OPA_PORT = 8181
POLICY_GRPC_PORT = 50051
POLICY_HTTP_PORT = 8081
POLICY_AUTHZEN_PORT = 8091
POLICY_FORWARD_AUTH_PORT = 8092


class ProcessError(RuntimeError):
    pass


@dataclass
class RegionProcess:
    region: RegionNet
    name: str
    root: Path
    state: RunState
    process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.root / f"{self.region.name}-{self.name}.log"

    def spawn(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                self.region.wrap(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})}, start_new_session=True,
                cwd=self.root,  # so a leftover is recognisable by its working directory, whatever its arguments
            )
        self.state.remember(pid=self.process.pid)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_until(self, check: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise ProcessError(f"{self.region.name} {self.name} exited; see {self.log}\n{self.tail()}")
            try:
                if check():
                    return
            except Exception:
                pass
            time.sleep(0.3)
        raise ProcessError(f"{self.region.name} {self.name} not ready after {timeout:.0f}s; see {self.log}\n"
                           f"{self.tail()}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, 9)
            self.process.wait(timeout=10)

    def tail(self, lines: int = 12) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


class RegionKafka(RegionProcess):
    """A single-node KRaft broker (broker + controller) listening on the region's client address.

    TLS only, a client certificate of the suite's CA required, like the local broker (ig_infra.components.kafka);
    no authorizer: these brokers exist to show where a tenant's events are stored, and the drill's client writes
    and reads every topic.
    """

    @property
    def bootstrap(self) -> str:
        return f"{self.region.client_host}:{self.region.port(KAFKA_PORT)}"

    @property
    def data(self) -> Path:
        return self.root / f"{self.region.name}-kafka-data"

    def start(self, paths: Paths) -> None:
        libs = paths.cache / f"kafka-{KAFKA_VERSION}" / "libs"
        if not (libs / ".complete").exists():
            raise ProcessError(f"Kafka jars missing in {libs}; run `uv run ig-infra up kafka` once to fetch them")
        controller_host = "127.0.0.1" if self.region.netns else self.region.client_host
        controller = f"{controller_host}:{self.region.port(KAFKA_CONTROLLER_PORT)}"
        # The broker's certificate names the region's address, which the drill's clients dial.
        identity = issue_for_addresses(paths.cache, BROKER_IDENTITY, self.root / f"{self.region.name}-kafka-identity",
                                       (self.region.client_host, controller_host))
        ensure_identities(paths.cache, paths.run, (KAFKA_CLIENT_IDENTITY,))
        keystore = self.root / f"{self.region.name}-kafka-keystore.pem"
        write_keystore(keystore, identity.directory)
        config = self.root / f"{self.region.name}-kafka.properties"
        config.write_text("\n".join([
            "process.roles=broker,controller", "node.id=1", f"controller.quorum.voters=1@{controller}",
            f"listeners=CLIENT://{self.bootstrap},CONTROLLER://{controller}",
            f"advertised.listeners=CLIENT://{self.bootstrap}", "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=CONTROLLER:SSL,CLIENT:SSL", "inter.broker.listener.name=CLIENT",
            *tls_properties(keystore, identity.ca),
            f"log.dirs={self.data}", "num.partitions=1", "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=1", "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1", "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=false",
            # The cleaner's default 128 MiB dedupe buffer does not fit the small heap of a test broker.
            "log.cleaner.dedupe.buffer.size=8388608", "",
        ]))
        log4j = self.root / "kafka-log4j.properties"
        log4j.write_text(LOG4J)
        classpath = f"{libs}/*"
        formatted = subprocess.run(storage_format_command(libs, config), capture_output=True, text=True)
        if formatted.returncode != 0:
            raise ProcessError(f"formatting {self.region.name} Kafka storage failed: {formatted.stdout}")
        self.spawn(["java", "-Xms256m", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                    "-Xshare:auto", f"-Dlog4j.configuration=file:{log4j}", "-cp", classpath, "kafka.Kafka",
                    str(config)])

    def wait_ready(self, timeout: float = 120) -> None:
        self.wait_until(lambda: asyncio.run(_kafka_answers(self.bootstrap)), timeout)


async def _kafka_answers(bootstrap: str) -> bool:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2000,
                                **client_security(identity_tls(KAFKA_CLIENT_IDENTITY)()))
    try:
        await admin.start()
        await admin.list_topics()
        return True
    finally:
        await admin.close()


class RegionOpa(RegionProcess):
    """OPA serving the repository's Rego policies on the region's address (the policy service's sidecar), locked
    as the suite's is: only the bearer of the region's token (its policy service, and the drill's residency probe
    reading the same document) may query it, nobody may change policies or data through the API."""

    @property
    def url(self) -> str:
        return f"http://{self.region.client_host}:{self.region.port(OPA_PORT)}"

    @property
    def token(self) -> OpaToken:
        return opa_token_in(self.root / f"{self.region.name}-opa-token")

    def start(self, paths: Paths, policies: Path) -> None:
        opa = tool_path(paths.cache, "opa")
        token = ensure_opa_token(self.root / f"{self.region.name}-opa-token")
        self.spawn([str(opa), "run", "--server", "--addr", f"{self.region.client_host}:{self.region.port(OPA_PORT)}",
                    "--log-level", "error", *locked_opa_arguments(token, policies)])

    def wait_ready(self, timeout: float = 30) -> None:
        def healthy() -> bool:
            with urllib.request.urlopen(f"{self.url}/health", timeout=1) as response:
                return bool(response.status == 200)

        self.wait_until(healthy, timeout)


class RegionPolicyService(RegionProcess):
    """The policy service (ig_policy.app) of this region, on the region's client address."""

    @property
    def grpc_target(self) -> str:
        return f"{self.region.client_host}:{self.region.port(POLICY_GRPC_PORT)}"

    @property
    def http_url(self) -> str:
        return f"http://{self.region.client_host}:{self.region.port(POLICY_HTTP_PORT)}"

    def start(self, database_url: str, kafka_bootstrap: str, opa_url: str, opa_token_file: Path) -> None:
        # Clients dial the region's own address, so the service's certificate names it.
        paths = Paths.from_environment()
        tls = issue_for_addresses(paths.cache, "policy", self.root / f"{self.region.name}-policy-tls",
                                  (self.region.client_host,))
        # The suite's identities and authorization table, whatever the caller's environment holds.
        self.spawn([sys.executable, "-m", "ig_policy.app"], env={
            **Identities(paths).env(), "IG_TLS_DIR": str(tls.directory),
            "IG_REGION": self.region.name, "IG_DATABASE_URL": database_url, "IG_KAFKA_BOOTSTRAP": kafka_bootstrap,
            "IG_OPA_URL": opa_url, "IG_OPA_TOKEN_FILE": str(opa_token_file), "IG_GRPC_HOST": self.region.client_host,
            "IG_GRPC_PORT": str(self.region.port(POLICY_GRPC_PORT)), "IG_HTTP_HOST": self.region.client_host,
            "IG_HTTP_PORT": str(self.region.port(POLICY_HTTP_PORT)),
            "IG_AUTHZEN_PORT": str(self.region.port(POLICY_AUTHZEN_PORT)),
            "IG_FORWARD_AUTH_PORT": str(self.region.port(POLICY_FORWARD_AUTH_PORT)), "OTEL_TRACES_EXPORTER": "none",
            "IG_DECISION_LOG_WAL_DIR": str(self.root / f"{self.region.name}-policy-wal"),
        })

    def wait_ready(self, timeout: float = 60) -> None:
        def healthy() -> bool:
            with urllib.request.urlopen(f"{self.http_url}/healthz", timeout=1) as response:
                return bool(response.status == 200)

        self.wait_until(healthy, timeout)
