"""Events the error-budget service publishes: burn transitions, flag changes, incidents."""

from ig.events.v1 import events_pb2
from ig_common.events.envelope import OutgoingEvent
from ig_common.events.topics import BURN, FLAGS, INCIDENTS

SOURCE = "/ig/burn"
BURN_TRANSITION = "ig.burn.transition.v1"
FLAG_CHANGED = "ig.flags.changed.v1"
INCIDENT_OPENED = "ig.incident.opened.v1"
INCIDENT_RESOLVED = "ig.incident.resolved.v1"


def burn_transition(transition: events_pb2.BurnTransition) -> OutgoingEvent:
    return OutgoingEvent(topic=BURN, type=BURN_TRANSITION, source=SOURCE, payload=transition,
                         subject=transition.slo, key=transition.slo)


def flag_changed(change: events_pb2.FlagChanged) -> OutgoingEvent:
    return OutgoingEvent(topic=FLAGS, type=FLAG_CHANGED, source=SOURCE, payload=change, subject=change.key,
                         key=change.key)


def incident(incident: events_pb2.Incident, *, opened: bool) -> OutgoingEvent:
    return OutgoingEvent(topic=INCIDENTS, type=INCIDENT_OPENED if opened else INCIDENT_RESOLVED, source=SOURCE,
                         payload=incident, subject=incident.incident_id, key=incident.incident_id)
