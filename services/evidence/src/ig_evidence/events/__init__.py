"""Events the evidence service publishes: ledger appends and registered bundles."""

from ig.events.v1 import events_pb2
from ig_common.events.envelope import OutgoingEvent
from ig_common.events.topics import EVIDENCE_BUNDLES, LEDGER_ENTRIES

SOURCE = "/ig/evidence"
ENTRY_APPENDED = "ig.ledger.entry_appended.v1"
BUNDLE_REGISTERED = "ig.evidence.bundle_registered.v1"


def entry_appended(entry: events_pb2.LedgerEntryAppended, event_id: str | None = None) -> OutgoingEvent:
    """``event_id``: one of a batch's ids (ig_common.events.envelope.new_event_ids); a fresh one when not given."""
    ids = {"id": event_id} if event_id is not None else {}
    return OutgoingEvent(topic=LEDGER_ENTRIES, type=ENTRY_APPENDED, source=SOURCE, payload=entry,
                         subject=str(entry.seq), key=entry.kind, **ids)


def bundle_registered(bundle: events_pb2.BundleRegistered) -> OutgoingEvent:
    return OutgoingEvent(topic=EVIDENCE_BUNDLES, type=BUNDLE_REGISTERED, source=SOURCE, payload=bundle,
                         subject=bundle.release, key=bundle.tenant or None)
