"""Apache Kafka in KRaft mode (combined broker + controller), jars from Maven Central, run on Java 17.

Both listeners speak TLS only and require a client certificate from the development CA: the broker presents the
`kafka` workload certificate (PEM, read directly: no keytool step), and takes each client's principal from its
certificate's subject, ``CN=<name>`` -> ``User:<name>``. KRaft's StandardAuthorizer denies whatever no ACL allows;
the ACLs come from ``policies/authz/kafka-topics.yaml`` and are applied at every start, as the super user
``kafka-admin`` (the broker's own identity is the other super user, for its controller connection).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import ssl
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ig_common.events.kafka_tls import client_security
from ig_common.tls import WorkloadCertificate

from ig_infra.components.base import Component, env_port
from ig_infra.kafka_acls import AclBinding, apply_bindings, load_bindings, principal
from ig_infra.pki import (
    LOCAL_ADDRESSES,
    LOCAL_NAMES,
    IssuedIdentity,
    ca_directory,
    ensure_identities,
    identities_directory,
    is_fresh,
    spiffe_id,
)
from ig_infra.prereqs import require
from ig_infra.process import InfraError, spawn, wait_until

KAFKA_VERSION = "3.9.1"
SLF4J_BINDING = ("org.slf4j", "slf4j-reload4j", "1.7.36")
BROKER_IDENTITY = "kafka"
# Creates topics and ACLs, nothing else uses it: the only super user besides the broker.
ADMIN_IDENTITY = "kafka-admin"
# Reads every topic (policies/authz/kafka-topics.yaml `readers`): the operator's tools and the tests.
READER_IDENTITY = "operator"
# CN=<name> -> <name>. No DEFAULT rule: a subject of any other shape has no principal, and its handshake fails.
PRINCIPAL_MAPPING = r"RULE:^CN=([a-z0-9][a-z0-9-]*)$/$1/"
# Pods of the real Kubernetes nodes (tools/k8s/README.md, "Infrastructure from pods") reach the broker when
# IG_KAFKA_POD_ADDRESS names the host's end of a node's link: a third listener there, TLS with client certificates
# like the others, advertising the name the charts dial, which the node's CoreDNS resolves to that address (a
# headless Service's endpoint). A broker advertising 127.0.0.1 sends a pod that bootstrapped through any name back to
# its own loopback. The broker's certificate then also carries that name and address (the clients verify them).
POD_ADDRESS_VARIABLE = "IG_KAFKA_POD_ADDRESS"
POD_NAME = "kafka-0.kafka.ig-data.svc.cluster.local"
POD_PORT = 9093

POM = f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.maestro.infra</groupId><artifactId>kafka-runtime</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{KAFKA_VERSION}</version></dependency>
    <dependency><groupId>{SLF4J_BINDING[0]}</groupId><artifactId>{SLF4J_BINDING[1]}</artifactId>
      <version>{SLF4J_BINDING[2]}</version></dependency>
  </dependencies>
</project>
"""

LOG4J = """log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.log.LogCleaner=WARN
"""


def tls_properties(keystore: Path, ca: Path) -> list[str]:
    """Broker settings for TLS listeners that require a certificate of ``ca`` and take the principal from its CN.

    One key store (a PEM file: PKCS#8 key, then the certificate) serves every listener and the broker's own
    connection to its controller.
    """
    return [
        "ssl.keystore.type=PEM",
        f"ssl.keystore.location={keystore}",
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={ca}",
        "ssl.client.auth=required",
        "ssl.endpoint.identification.algorithm=https",
        f"ssl.principal.mapping.rules={PRINCIPAL_MAPPING}",
    ]


def storage_format_command(libs: Path, config: Path) -> list[str]:
    """Kafka's StorageTool formatting a new KRaft log dir for ``config`` under a fresh cluster id. "=": a base64url
    id may start with "-", which the tool's parser otherwise takes for an option (1 start in 64 failed so: "argument
    --cluster-id/-t: expected one argument")."""
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    return ["java", "-cp", f"{libs}/*", "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}", "-c",
            str(config)]


def write_keystore(keystore: Path, identity: Path) -> bool:
    """The PEM key store of the certificate in ``identity`` (tls.key, tls.crt), 0600; True when it changed."""
    content = (identity / "tls.key").read_bytes() + (identity / "tls.crt").read_bytes()
    if keystore.exists() and keystore.read_bytes() == content:
        return False
    temp = keystore.with_suffix(".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(content)
    temp.replace(keystore)
    return True


class Kafka(Component):
    name = "kafka"

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.host = os.environ.get("IG_KAFKA_HOST", "127.0.0.1")
        self.port = env_port("IG_KAFKA_PORT", 59092)
        self.pod_address = os.environ.get(POD_ADDRESS_VARIABLE, "").strip() or None
        self.controller_port = env_port("IG_KAFKA_CONTROLLER_PORT", 59093)
        self.libs = self.paths.cache / f"kafka-{KAFKA_VERSION}" / "libs"
        self.data = self.dir / "data"
        self.config = self.dir / "server.properties"
        # The broker's key and certificate chain in one PEM file, the form ssl.keystore.location takes.
        self.keystore = self.dir / "keystore.pem"

    def install(self) -> None:
        if (self.libs / ".complete").exists():
            return
        require("java", "mvn")
        self.libs.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as scratch:
            (Path(scratch) / "pom.xml").write_text(POM)
            result = subprocess.run(
                ["mvn", "-q", "-B", "dependency:copy-dependencies", f"-DoutputDirectory={self.libs}",
                 "-DincludeScope=runtime"],
                cwd=scratch, capture_output=True, text=True,
            )
        if result.returncode != 0:
            raise InfraError(f"fetching Kafka {KAFKA_VERSION} jars with Maven failed:\n{result.stdout[-3000:]}")
        (self.libs / ".complete").write_text(KAFKA_VERSION)

    def identity_directory(self, name: str) -> Path:
        return identities_directory(self.paths.run) / name

    def ssl_context(self, identity: str) -> ssl.SSLContext:
        """A client context presenting ``identity``'s certificate (issued by the Identities component)."""
        return WorkloadCertificate(self.identity_directory(identity)).client_ssl_context()

    def _write_keystore(self) -> bool:
        """Write the broker's PEM keystore from its (possibly renewed) certificate; True when it changed."""
        ensure_identities(self.paths.cache, self.paths.run, (BROKER_IDENTITY, ADMIN_IDENTITY))
        identity = self.identity_directory(BROKER_IDENTITY)
        if self.pod_address:
            identity = self._pod_identity()
        return write_keystore(self.keystore, identity)

    def _pod_identity(self) -> Path:
        """The broker's certificate for the pods' listener as well: the pods' name and address beside loopback's;
        renewed like the workloads', and at once when the address changes (the directory is named after it)."""
        from ig_infra.pki import DevCA

        assert self.pod_address is not None
        ca = DevCA.load_or_create(ca_directory(self.paths.cache))
        directory = self.dir / f"pod-tls-{self.pod_address}"
        issued = IssuedIdentity(BROKER_IDENTITY, directory, spiffe_id(BROKER_IDENTITY))
        if not is_fresh(issued, ca.cert_pem):
            ca.issue(BROKER_IDENTITY, directory, dns_names=(*LOCAL_NAMES, POD_NAME),
                     ip_addresses=(*LOCAL_ADDRESSES, self.pod_address))
        return directory

    def _write_config(self) -> None:
        ca = self.identity_directory(BROKER_IDENTITY) / "ca.crt"
        listeners = [f"CLIENT://{self.host}:{self.port}"]
        advertised = list(listeners)
        protocols = ["CLIENT:SSL", "CONTROLLER:SSL"]
        if self.pod_address:
            listeners.append(f"POD://{self.pod_address}:{POD_PORT}")
            advertised.append(f"POD://{POD_NAME}:{POD_PORT}")
            protocols.append("POD:SSL")
        self.config.write_text("\n".join([
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@{self.host}:{self.controller_port}",
            # No plaintext listener. The controller's listener is TLS with client authentication too: in KRaft it
            # takes the metadata log's Raft traffic and (KIP-919) admin requests, so a plaintext port there would
            # be a way around both the certificate check and, for the Raft requests, the authorizer's identity.
            f"listeners={','.join(listeners)},CONTROLLER://{self.host}:{self.controller_port}",
            f"advertised.listeners={','.join(advertised)}",
            "controller.listener.names=CONTROLLER",
            f"listener.security.protocol.map={','.join(protocols)}",
            "inter.broker.listener.name=CLIENT",
            *tls_properties(self.keystore, ca),
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found=false",
            f"super.users={principal(BROKER_IDENTITY)};{principal(ADMIN_IDENTITY)}",
            f"log.dirs={self.data}",
            "num.partitions=3",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=10",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=false",
            "log.retention.hours=168",
            # The local broker outlives runs and the benchmarks publish hundreds of MB: at most 256 MiB per
            # partition, in 64 MiB segments (retention deletes whole segments only).
            "log.retention.bytes=268435456",
            "log.segment.bytes=67108864",
            "",
        ]))
        (self.dir / "log4j.properties").write_text(LOG4J)

    def start(self) -> None:
        renewed = self._write_keystore()
        if self.running() and self.healthy():
            if not renewed:
                self.apply_acls()
                return
            # The broker reads its key store at start: a renewed certificate takes a restart (clients ride it out,
            # the outbox keeps what could not be sent).
            self.stop()
        require("java")
        self.ensure_free(self.host, self.port, "IG_KAFKA_PORT")
        self.ensure_free(self.host, self.controller_port, "IG_KAFKA_CONTROLLER_PORT")
        if self.pod_address:
            self.ensure_free(self.pod_address, POD_PORT, POD_ADDRESS_VARIABLE)
        self._write_config()
        if not (self.data / "meta.properties").exists():
            result = subprocess.run(storage_format_command(self.libs, self.config), capture_output=True, text=True)
            if result.returncode != 0:
                raise InfraError(f"formatting Kafka storage failed:\n{result.stdout}{result.stderr}")
        heap = os.environ.get("IG_KAFKA_HEAP", "512m")
        spawn(
            self.in_region(["java", f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC", "-XX:TieredStopAtLevel=1",
             f"-Dlog4j.configuration=file:{self.dir / 'log4j.properties'}", "-cp", f"{self.libs}/*",
             "kafka.Kafka", str(self.config)]),
            log_file=self.log_file, pid_file=self.pid_file,
        )
        wait_until(self.healthy, timeout=90, what="Kafka", log_file=self.log_file, alive=self.running)
        self.apply_acls()

    def healthy(self) -> bool:
        if not (self.running() and self.listening(self.host, self.port)):
            return False
        try:
            context = self.ssl_context(ADMIN_IDENTITY)
        except Exception:
            return False
        return asyncio.run(_metadata_ok(self.bootstrap, context))

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def address(self) -> str:
        return f"{self.bootstrap} (TLS, client certificates, ACLs)"

    def env(self) -> dict[str, str]:
        return {"IG_KAFKA_BOOTSTRAP": self.bootstrap}

    def _admin(self, timeout_ms: int = 10000) -> contextlib.AbstractAsyncContextManager[Any]:
        return _admin(self.bootstrap, self.ssl_context(ADMIN_IDENTITY), timeout_ms)

    def apply_acls(self) -> tuple[list[AclBinding], list[AclBinding]]:
        """Make the broker's ACLs exactly those of policies/authz/kafka-topics.yaml; returns (created, deleted)."""
        wanted = load_bindings()

        async def apply() -> tuple[list[AclBinding], list[AclBinding]]:
            async with self._admin() as admin:
                return await apply_bindings(admin, wanted)

        return asyncio.run(apply())

    def create_topics(self, topics: list[str], partitions: int = 3) -> list[str]:
        async def create() -> list[str]:
            async with self._admin() as admin:
                return await _create_topics(admin, topics, partitions)

        return asyncio.run(create())

    def delete_topics(self, topics: list[str]) -> None:
        async def delete() -> None:
            async with self._admin() as admin:
                await admin.delete_topics(topics)

        asyncio.run(delete())


@contextlib.asynccontextmanager
async def _admin(bootstrap: str, ssl_context: ssl.SSLContext, timeout_ms: int = 10000) -> AsyncIterator[Any]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=timeout_ms,
                                **client_security(ssl_context))
    try:
        await admin.start()
        yield admin
    finally:
        await admin.close()


async def _metadata_ok(bootstrap: str, ssl_context: ssl.SSLContext) -> bool:
    try:
        async with _admin(bootstrap, ssl_context, timeout_ms=3000) as admin:
            await admin.list_topics()
        return True
    except Exception:
        return False


async def _create_topics(admin: Any, topics: list[str], partitions: int) -> list[str]:
    from aiokafka.admin import NewTopic

    existing = set(await admin.list_topics())
    missing = [t for t in topics if t not in existing]
    if missing:
        await admin.create_topics([NewTopic(t, num_partitions=partitions, replication_factor=1) for t in missing])
    return missing
