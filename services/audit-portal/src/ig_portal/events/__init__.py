"""Events the audit portal publishes: one per access (view, read, download, export)."""

from ig.events.v1 import events_pb2
from ig_common.events.envelope import OutgoingEvent
from ig_common.events.topics import AUDIT_ACCESS

SOURCE = "/ig/audit-portal"
ACCESSED = "ig.audit.accessed.v1"


def accessed(access: events_pb2.AuditAccess) -> OutgoingEvent:
    return OutgoingEvent(topic=AUDIT_ACCESS, type=ACCESSED, source=SOURCE, payload=access,
                         subject=access.object, key=access.tenant or None)
