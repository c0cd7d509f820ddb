"""The event bus's ACLs from one declarative file (``policies/authz/kafka-topics.yaml``), and making the broker's
ACLs exactly those.

aiokafka's admin client has no ACL methods, but its protocol layer has the CreateAcls, DescribeAcls and DeleteAcls
requests; they are sent over the admin client's own (mTLS) connection, as the super user ``kafka-admin``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ig_infra.paths import REPO_ROOT

ACL_FILE = REPO_ROOT / "policies" / "authz" / "kafka-topics.yaml"
# Consumer groups of an identity in `readers` are named `<identity>.<anything>`.
READER_GROUP_SEPARATOR = "."


class ResourceType(enum.IntEnum):  # org.apache.kafka.common.resource.ResourceType
    ANY = 1
    TOPIC = 2
    GROUP = 3
    CLUSTER = 4


class PatternType(enum.IntEnum):  # org.apache.kafka.common.resource.PatternType
    ANY = 1
    LITERAL = 3
    PREFIXED = 4


class Operation(enum.IntEnum):  # org.apache.kafka.common.acl.AclOperation
    ANY = 1
    READ = 3
    WRITE = 4


class Permission(enum.IntEnum):  # org.apache.kafka.common.acl.AclPermissionType
    ANY = 1
    ALLOW = 3


class AclFileError(ValueError):
    """The ACL file is malformed or disagrees with the topics and identities the suite knows."""


@dataclass(frozen=True, order=True)
class AclBinding:
    resource_type: int
    resource_name: str
    pattern_type: int
    principal: str
    host: str
    operation: int
    permission: int

    def describe(self) -> str:
        pattern = "prefix " if self.pattern_type == PatternType.PREFIXED else ""
        return (f"{self.principal} {Permission(self.permission).name} {Operation(self.operation).name} on "
                f"{ResourceType(self.resource_type).name.lower()} {pattern}{self.resource_name}")


def principal(identity: str) -> str:
    return f"User:{identity}"


def _allow(resource_type: ResourceType, name: str, identity: str, operation: Operation,
           pattern: PatternType = PatternType.LITERAL) -> AclBinding:
    return AclBinding(resource_type, name, pattern, principal(identity), "*", operation, Permission.ALLOW)


def _names(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise AclFileError(f"{where}: expected a list of identity names, got {value!r}")
    return list(value)


def bindings_from(document: Any, *, topics: Iterable[str], identities: Iterable[str]) -> list[AclBinding]:
    """Every ACL the file grants; refuses a file that misses a topic, names an unknown one or an unknown identity."""
    if not isinstance(document, dict) or not isinstance(document.get("topics"), dict):
        raise AclFileError("expected a mapping with `topics:` (and `readers:`)")
    known_topics, known_identities = set(topics), set(identities)
    declared = document["topics"]
    missing, unknown = known_topics - set(declared), set(declared) - known_topics
    if missing or unknown:
        raise AclFileError(f"topics without an entry: {sorted(missing)}; entries for unknown topics: {sorted(unknown)}")
    bindings: list[AclBinding] = []
    named: list[tuple[str, str]] = []
    for topic, entry in declared.items():
        if not isinstance(entry, dict) or set(entry) - {"producers", "consumers"}:
            raise AclFileError(f"{topic}: expected `producers:` and `consumers:`, got {entry!r}")
        for producer in _names(entry.get("producers", []), f"{topic}.producers"):
            named.append((producer, f"{topic}.producers"))
            bindings.append(_allow(ResourceType.TOPIC, topic, producer, Operation.WRITE))
        consumers = entry.get("consumers", [])
        if not isinstance(consumers, list):
            raise AclFileError(f"{topic}.consumers: expected a list of {{identity, group}}, got {consumers!r}")
        for consumer in consumers:
            if not isinstance(consumer, dict) or set(consumer) != {"identity", "group"} \
                    or not all(isinstance(v, str) and v for v in consumer.values()):
                raise AclFileError(f"{topic}.consumers: expected {{identity: NAME, group: GROUP}}, got {consumer!r}")
            named.append((consumer["identity"], f"{topic}.consumers"))
            bindings.append(_allow(ResourceType.TOPIC, topic, consumer["identity"], Operation.READ))
            bindings.append(_allow(ResourceType.GROUP, consumer["group"], consumer["identity"], Operation.READ))
    for reader in _names(document.get("readers", []), "readers"):
        named.append((reader, "readers"))
        bindings += [_allow(ResourceType.TOPIC, topic, reader, Operation.READ) for topic in declared]
        bindings.append(_allow(ResourceType.GROUP, reader + READER_GROUP_SEPARATOR, reader, Operation.READ,
                               PatternType.PREFIXED))
    strangers = sorted({f"{name} ({where})" for name, where in named if name not in known_identities})
    if strangers:
        raise AclFileError(f"unknown identities: {', '.join(strangers)}")
    return sorted(set(bindings))


def load_bindings(path: Path = ACL_FILE) -> list[AclBinding]:
    from ig_common.events.topics import ALL_TOPICS

    from ig_infra.pki import CLIENT_IDENTITIES, SERVICE_IDENTITIES

    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise AclFileError(f"{path}: {error}") from error
    try:
        return bindings_from(document, topics=ALL_TOPICS, identities=SERVICE_IDENTITIES + CLIENT_IDENTITIES)
    except AclFileError as error:
        raise AclFileError(f"{path}: {error}") from error


async def broker_bindings(admin: Any) -> set[AclBinding]:
    """Every ACL the broker holds (admin: a started ``AIOKafkaAdminClient`` of a super user)."""
    from aiokafka.errors import for_code
    from aiokafka.protocol.admin import DescribeAclsRequest

    response = await admin._send_request(DescribeAclsRequest(
        ResourceType.ANY, None, PatternType.ANY, None, None, Operation.ANY, Permission.ANY))
    if response.error_code:
        raise for_code(response.error_code)(f"describing ACLs: {response.error_message}")
    return {AclBinding(resource_type, name, pattern, *acl)
            for resource_type, name, pattern, acls in response.resources for acl in acls}


async def apply_bindings(admin: Any, wanted: Iterable[AclBinding]) -> tuple[list[AclBinding], list[AclBinding]]:
    """Make the broker's ACLs exactly ``wanted``; returns (created, deleted)."""
    from aiokafka.errors import for_code
    from aiokafka.protocol.admin import CreateAclsRequest, DeleteAclsRequest

    wanted_set = set(wanted)
    present = await broker_bindings(admin)
    created, deleted = sorted(wanted_set - present), sorted(present - wanted_set)
    # Deleting first: a narrowed grant never coexists with the wider one it replaces.
    for binding in deleted:
        response = await admin._send_request(DeleteAclsRequest(*_fields(binding)))
        for code, message, _ in response.filter_responses:
            if code:
                raise for_code(code)(f"deleting ACL {binding.describe()}: {message}")
    for binding in created:
        response = await admin._send_request(CreateAclsRequest(*_fields(binding)))
        for code, message in response.creation_responses:
            if code:
                raise for_code(code)(f"creating ACL {binding.describe()}: {message}")
    return created, deleted


def _fields(binding: AclBinding) -> tuple[int, str, int, str, str, int, int]:
    return (binding.resource_type, binding.resource_name, binding.pattern_type, binding.principal, binding.host,
            binding.operation, binding.permission)
