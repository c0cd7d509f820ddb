"""Events the migration orchestrator publishes: one per phase transition."""

from ig.events.v1 import events_pb2
from ig_common.events.envelope import OutgoingEvent
from ig_common.events.topics import MIGRATION

SOURCE = "/ig/migration"
PHASE_CHANGED = "ig.migration.phase_changed.v1"


def phase_changed(change: events_pb2.MigrationPhaseChanged) -> OutgoingEvent:
    return OutgoingEvent(topic=MIGRATION, type=PHASE_CHANGED, source=SOURCE, payload=change,
                         subject=change.change, key=change.change)
