"""The event bus against the real broker: only certificates of the suite's CA get in, and each principal may write
only the topics it owns and read only those it consumes (policies/authz/kafka-topics.yaml)."""

from __future__ import annotations

import asyncio
import ssl
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAuthorizationFailedError
from ig_common.events.envelope import to_kafka_record
from ig_common.events.kafka_tls import client_security
from ig_common.events.topics import ALL_TOPICS, BURN, POLICY_DECISIONS
from ig_common.tls import WorkloadCertificate
from ig_infra.components.kafka import ADMIN_IDENTITY
from ig_infra.kafka_acls import (
    AclBinding,
    Operation,
    PatternType,
    Permission,
    ResourceType,
    apply_bindings,
    broker_bindings,
    load_bindings,
)
from ig_infra.kafka_reading import consumer_at, identity_tls
from ig_infra.pki import DevCA

pytestmark = pytest.mark.integration

# Long enough for a real broker on a busy 2-core host, short enough that a refused client fails the test quickly.
TIMEOUT_MS = 8000


def probe_record() -> dict[str, Any]:
    """A well-formed CloudEvent, so a reader of the shared topic that parses every record is not disturbed."""
    key, value, headers = to_kafka_record(ce_id=f"evt_acl_probe_{uuid.uuid4().hex}", ce_type="ig.test.acl_probe.v1",
                                          source="/tools/infra/tests", subject=None, time=datetime.now(UTC),
                                          key=b"acl-probe", data=b"")
    return {"key": key, "value": value, "headers": headers}


async def produce_once(bootstrap: str, topic: str, context: ssl.SSLContext) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all",
                                request_timeout_ms=TIMEOUT_MS, **client_security(context))
    await producer.start()
    try:
        await asyncio.wait_for(producer.send_and_wait(topic, **probe_record()), TIMEOUT_MS / 1000)
    finally:
        await producer.stop()


async def connect(bootstrap: str, **security: Any) -> None:
    """Start a producer (fetches metadata: the first request after the handshake) and stop it again."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=TIMEOUT_MS, **security)
    try:
        await producer.start()
    finally:
        await producer.stop()


def server_verifying_context(ca: Path) -> ssl.SSLContext:
    """Verifies the broker like every client of the suite does, but presents no certificate."""
    return ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))


async def test_the_owner_may_produce_to_its_topic(infra: Any, kafka_bootstrap: str) -> None:
    await produce_once(kafka_bootstrap, POLICY_DECISIONS, identity_tls("policy")())


async def test_burn_may_not_produce_to_the_policy_decisions(infra: Any, kafka_bootstrap: str) -> None:
    # burn may write its own topics (so its idempotent producer gets a producer id) but not policy's.
    with pytest.raises(TopicAuthorizationFailedError):
        await produce_once(kafka_bootstrap, POLICY_DECISIONS, identity_tls("burn")())


async def test_a_reader_identity_cannot_produce(infra: Any, kafka_bootstrap: str) -> None:
    with pytest.raises(KafkaError):  # no WRITE anywhere: refused a producer id, or the topic
        await produce_once(kafka_bootstrap, BURN, identity_tls("operator")())


async def test_a_service_cannot_read_a_topic_it_does_not_consume(infra: Any, kafka_bootstrap: str) -> None:
    consumer = AIOKafkaConsumer(POLICY_DECISIONS, bootstrap_servers=kafka_bootstrap, enable_auto_commit=False,
                                request_timeout_ms=TIMEOUT_MS, **client_security(identity_tls("burn")()))
    try:
        with pytest.raises(TopicAuthorizationFailedError):  # at start (metadata) or at the first fetch
            await consumer.start()
            async with asyncio.timeout(TIMEOUT_MS / 1000):
                await consumer.getmany(timeout_ms=TIMEOUT_MS)
    finally:
        await consumer.stop()


async def test_the_reader_identity_reads_every_topic(infra: Any, kafka_bootstrap: str) -> None:
    async with consumer_at(kafka_bootstrap, *ALL_TOPICS) as consumer:
        assert {partition.topic for partition in consumer.assignment()} == set(ALL_TOPICS)


async def test_a_client_without_a_certificate_cannot_connect(infra: Any, kafka_bootstrap: str) -> None:
    ca = infra.kafka.identity_directory(ADMIN_IDENTITY) / "ca.crt"
    with pytest.raises(KafkaConnectionError):
        await connect(kafka_bootstrap, **client_security(server_verifying_context(ca)))


async def test_a_plaintext_client_cannot_connect(infra: Any, kafka_bootstrap: str) -> None:
    with pytest.raises(KafkaConnectionError):
        await connect(kafka_bootstrap)


async def test_a_certificate_from_another_ca_cannot_connect(infra: Any, kafka_bootstrap: str,
                                                            tmp_path: Path) -> None:
    # The rogue certificate claims a super user's name; only the issuer tells it apart.
    rogue = DevCA.load_or_create(tmp_path / "rogue-ca", common_name="Rogue CA").issue(ADMIN_IDENTITY,
                                                                                       tmp_path / "rogue")
    context = server_verifying_context(infra.kafka.identity_directory(ADMIN_IDENTITY) / "ca.crt")
    context.load_cert_chain(rogue.cert, rogue.key)
    with pytest.raises(KafkaConnectionError):
        await connect(kafka_bootstrap, **client_security(context))
    # The same client with the suite's certificate gets in: the refusal above was about the issuer.
    await connect(kafka_bootstrap, **client_security(WorkloadCertificate(
        infra.kafka.identity_directory(ADMIN_IDENTITY)).client_ssl_context()))


def test_applying_the_file_leaves_exactly_its_acls(infra: Any) -> None:
    stray = AclBinding(ResourceType.TOPIC, BURN, PatternType.LITERAL, "User:gateway", "*", Operation.WRITE,
                       Permission.ALLOW)

    async def add_stray_then_list() -> set[AclBinding]:
        async with infra.kafka._admin() as admin:
            await apply_bindings(admin, [*load_bindings(), stray])
            return await broker_bindings(admin)

    async def listed() -> set[AclBinding]:
        async with infra.kafka._admin() as admin:
            return await broker_bindings(admin)

    try:
        assert stray in asyncio.run(add_stray_then_list())
    finally:
        created, deleted = infra.kafka.apply_acls()
    assert (created, deleted) == ([], [stray])
    assert sorted(asyncio.run(listed())) == load_bindings()
