"""The Kafka ACL file: what it grants, and that it refuses to disagree with the topics and identities."""

from __future__ import annotations

import pytest
from ig_infra.kafka_acls import AclFileError, bindings_from, load_bindings

TOPICS = ("t.owned", "t.other")
IDENTITIES = ("policy", "burn", "operator")


def document(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "topics": {"t.owned": {"producers": ["policy"], "consumers": [{"identity": "burn", "group": "burn-g"}]},
                   "t.other": {"producers": ["burn"], "consumers": []}},
        "readers": ["operator"],
    }
    return {**base, **overrides}


def test_grants_are_exactly_writes_for_producers_and_reads_for_consumers_and_readers() -> None:
    granted = {b.describe() for b in bindings_from(document(), topics=TOPICS, identities=IDENTITIES)}
    assert granted == {
        "User:policy ALLOW WRITE on topic t.owned", "User:burn ALLOW WRITE on topic t.other",
        "User:burn ALLOW READ on topic t.owned", "User:burn ALLOW READ on group burn-g",
        "User:operator ALLOW READ on topic t.owned", "User:operator ALLOW READ on topic t.other",
        "User:operator ALLOW READ on group prefix operator.",
    }


def test_a_topic_without_an_entry_is_refused() -> None:
    with pytest.raises(AclFileError, match=r"t\.new"):
        bindings_from(document(), topics=(*TOPICS, "t.new"), identities=IDENTITIES)


def test_an_unknown_identity_is_refused() -> None:
    doc = document(readers=["operator", "mallory"])
    with pytest.raises(AclFileError, match="mallory"):
        bindings_from(doc, topics=TOPICS, identities=IDENTITIES)


def test_the_repository_file_is_valid() -> None:
    assert load_bindings()
