"""Events the Policy Reasoner publishes: one per logged decision."""

from ig.events.v1 import events_pb2
from ig_common.events.envelope import OutgoingEvent
from ig_common.events.topics import POLICY_DECISIONS

SOURCE = "/ig/policy"
DECISION_LOGGED = "ig.policy.decision.v1"


def decision_logged(record: events_pb2.PolicyDecision) -> OutgoingEvent:
    return OutgoingEvent(topic=POLICY_DECISIONS, type=DECISION_LOGGED, source=SOURCE, payload=record,
                         subject=record.decision_id, key=record.tenant or None)
