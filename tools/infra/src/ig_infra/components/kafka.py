"""Apache Kafka in KRaft mode (combined broker + controller), jars from Maven Central, run on Java 17."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ig_infra.components.base import Component, env_port
from ig_infra.prereqs import require
from ig_infra.process import InfraError, ensure_port_free, port_open, spawn, wait_until

KAFKA_VERSION = "3.9.1"
SLF4J_BINDING = ("org.slf4j", "slf4j-reload4j", "1.7.36")

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


class Kafka(Component):
    name = "kafka"

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.host = os.environ.get("IG_KAFKA_HOST", "127.0.0.1")
        self.port = env_port("IG_KAFKA_PORT", 59092)
        self.controller_port = env_port("IG_KAFKA_CONTROLLER_PORT", 59093)
        self.libs = self.paths.cache / f"kafka-{KAFKA_VERSION}" / "libs"
        self.data = self.dir / "data"
        self.config = self.dir / "server.properties"

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

    def _java(self, *args: str) -> list[str]:
        return ["java", "-cp", f"{self.libs}/*", *args]

    def _write_config(self) -> None:
        self.config.write_text("\n".join([
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@{self.host}:{self.controller_port}",
            f"listeners=PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{self.controller_port}",
            f"advertised.listeners=PLAINTEXT://{self.host}:{self.port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "inter.broker.listener.name=PLAINTEXT",
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
        if self.running() and self.healthy():
            return
        require("java")
        ensure_port_free(self.host, self.port, "Kafka", "IG_KAFKA_PORT")
        ensure_port_free(self.host, self.controller_port, "the Kafka controller", "IG_KAFKA_CONTROLLER_PORT")
        self._write_config()
        if not (self.data / "meta.properties").exists():
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            result = subprocess.run(
                self._java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(self.config)),
                capture_output=True, text=True,
            )
            if result.returncode != 0:
                raise InfraError(f"formatting Kafka storage failed:\n{result.stdout}{result.stderr}")
        heap = os.environ.get("IG_KAFKA_HEAP", "512m")
        spawn(
            ["java", f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC", "-XX:TieredStopAtLevel=1",
             f"-Dlog4j.configuration=file:{self.dir / 'log4j.properties'}", "-cp", f"{self.libs}/*",
             "kafka.Kafka", str(self.config)],
            log_file=self.log_file, pid_file=self.pid_file,
        )
        wait_until(self.healthy, timeout=90, what="Kafka", log_file=self.log_file, alive=self.running)

    def healthy(self) -> bool:
        return self.running() and port_open(self.host, self.port) and asyncio.run(_metadata_ok(self.bootstrap))

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def address(self) -> str:
        return self.bootstrap

    def env(self) -> dict[str, str]:
        return {"IG_KAFKA_BOOTSTRAP": self.bootstrap}

    def create_topics(self, topics: list[str], partitions: int = 3) -> list[str]:
        return asyncio.run(_create_topics(self.bootstrap, topics, partitions))

    def delete_topics(self, topics: list[str]) -> None:
        asyncio.run(_delete_topics(self.bootstrap, topics))


@contextlib.asynccontextmanager
async def _admin(bootstrap: str, timeout_ms: int = 10000) -> AsyncIterator[Any]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=timeout_ms)
    try:
        await admin.start()
        yield admin
    finally:
        await admin.close()


async def _metadata_ok(bootstrap: str) -> bool:
    try:
        async with _admin(bootstrap, timeout_ms=3000) as admin:
            await admin.list_topics()
        return True
    except Exception:
        return False


async def _create_topics(bootstrap: str, topics: list[str], partitions: int) -> list[str]:
    from aiokafka.admin import NewTopic

    async with _admin(bootstrap) as admin:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if missing:
            await admin.create_topics([NewTopic(t, num_partitions=partitions, replication_factor=1)
                                       for t in missing])
        return missing


async def _delete_topics(bootstrap: str, topics: list[str]) -> None:
    async with _admin(bootstrap) as admin:
        await admin.delete_topics(topics)
