"""CloudEvents the burn service publishes (through the outbox) and the Alertmanager webhook body."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from google.protobuf import struct_pb2
from google.protobuf.json_format import ParseDict
from ig.events.v1 import events_pb2
from ig_common.events import topics
from ig_common.events.envelope import OutgoingEvent

from ig_burn.domain.flags import FlagValue
from ig_burn.domain.throttle import Transition

SOURCE = "ig-burn"
FLAG_CHANGED = "ig.flags.changed.v1"
BURN_TRANSITION = "ig.burn.transition.v1"
INCIDENT_OPENED = "ig.incident.opened.v1"
INCIDENT_RESOLVED = "ig.incident.resolved.v1"


def to_value(value: FlagValue | None) -> struct_pb2.Value:
    message = struct_pb2.Value()
    if value is None:
        message.null_value = struct_pb2.NULL_VALUE
        return message
    # Value is the well-known type for any JSON value; ParseDict's annotation only admits objects.
    return ParseDict(value, message)  # type: ignore[arg-type]


def flag_changed(key: str, old: FlagValue | None, new: FlagValue, changed_by: str, reason: str) -> OutgoingEvent:
    payload = events_pb2.FlagChanged(key=key, old_value=to_value(old), new_value=to_value(new),
                                     changed_by=changed_by, reason=reason)
    return OutgoingEvent(topic=topics.FLAGS, type=FLAG_CHANGED, source=SOURCE, payload=payload, subject=key, key=key)


def burn_transition(transition: Transition, service: str) -> OutgoingEvent:
    payload = events_pb2.BurnTransition(
        slo=transition.slo, service=service, from_state=transition.from_state, to_state=transition.to_state,
        monthly_budget_consumed=transition.monthly_budget_consumed, reason=transition.reason,
    )
    return OutgoingEvent(topic=topics.BURN, type=BURN_TRANSITION, source=SOURCE, payload=payload,
                         subject=transition.slo, key=transition.slo)


def incident(incident_id: str, slo: str, service: str, status: str, summary: str) -> OutgoingEvent:
    payload = events_pb2.Incident(incident_id=incident_id, slo=slo, service=service, status=status, summary=summary)
    kind = INCIDENT_OPENED if status == "open" else INCIDENT_RESOLVED
    return OutgoingEvent(topic=topics.INCIDENTS, type=kind, source=SOURCE, payload=payload, subject=incident_id,
                         key=slo)


def alertmanager_webhook(*, incident_id: str, slo: str, service: str, status: str, severity: str, summary: str,
                         opened_at: datetime, resolved_at: datetime | None, external_url: str) -> dict[str, Any]:
    """The body Alertmanager sends to a webhook receiver (version 4), one alert per incident."""
    firing = status == "open"
    labels = {"alertname": "ErrorBudgetBurn", "slo": slo, "service": service, "severity": severity,
              "incident_id": incident_id}
    alert = {
        "status": "firing" if firing else "resolved",
        "labels": labels,
        "annotations": {"summary": summary, "runbook": "Burn Exceeded: auto-throttle flags; notify owners; "
                                                       "schedule reliability fix"},
        "startsAt": opened_at.isoformat(),
        "endsAt": resolved_at.isoformat() if resolved_at else "0001-01-01T00:00:00Z",
        "generatorURL": f"{external_url}/burn",
        "fingerprint": incident_id,
    }
    return {
        "version": "4", "groupKey": f'{{}}:{{slo="{slo}"}}', "truncatedAlerts": 0,
        "status": alert["status"], "receiver": "ig-burn", "groupLabels": {"slo": slo},
        "commonLabels": labels, "commonAnnotations": alert["annotations"], "externalURL": external_url,
        "alerts": [alert],
    }
