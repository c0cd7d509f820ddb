"""What the burn stage reads besides the burn service itself: the shared Prometheus's alerts and series, and the
incidents the burn service publishes on ig.incidents.v1 (read as the bus's reader identity, like the migration
stage's events)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx
from ig.events.v1 import events_pb2
from ig_common.events.envelope import from_kafka_record
from ig_common.events.topics import INCIDENTS


def prometheus_alerts(prometheus_url: str, alertname: str, slo: str) -> list[dict[str, Any]]:
    """The pending or firing alerts named ``alertname`` for ``slo`` (``/api/v1/alerts``; a resolved one is gone)."""
    reply = httpx.get(f"{prometheus_url}/api/v1/alerts", timeout=5)
    reply.raise_for_status()
    return [alert for alert in reply.json()["data"]["alerts"]
            if alert["labels"].get("alertname") == alertname and alert["labels"].get("slo") == slo]


def prometheus_series(prometheus_url: str, promql: str) -> list[dict[str, Any]]:
    """An instant query's result vector."""
    reply = httpx.get(f"{prometheus_url}/api/v1/query", params={"query": promql}, timeout=5)
    reply.raise_for_status()
    result: list[dict[str, Any]] = reply.json()["data"]["result"]
    return result


class IncidentWatch:
    """The ig.incidents.v1 events of one SLO, followed in a thread from ``since`` (epoch seconds) until stopped."""

    def __init__(self, bootstrap: str, slo: str, since: float) -> None:
        self.bootstrap = bootstrap
        self.slo = slo
        self.since = since
        self.error: BaseException | None = None
        self._events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="incident-watch", daemon=True)

    def start(self) -> IncidentWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._events)

    def first(self, status: str, incident_id: str | None = None) -> dict[str, Any] | None:
        """The first event that says the incident is ``status`` (open, resolved), of ``incident_id`` if given."""
        if self.error is not None:
            raise RuntimeError(f"reading {INCIDENTS} at {self.bootstrap} failed: {self.error!r}")
        return next((e for e in self.events() if e["status"] == status
                     and (incident_id is None or e["incident_id"] == incident_id)), None)

    def _run(self) -> None:
        try:
            asyncio.run(self._follow())
        except BaseException as error:  # the stage reports it when it asks for an event
            self.error = error

    async def _follow(self) -> None:
        from ig_infra.kafka_reading import consumer_at

        async with consumer_at(self.bootstrap, INCIDENTS, since=self.since) as consumer:
            while not self._stop.is_set():
                for partition, records in (await consumer.getmany(timeout_ms=500)).items():
                    for record in records:
                        event = from_kafka_record(record.topic, record.key, record.value, list(record.headers))
                        payload = event.parse(events_pb2.Incident())
                        if payload.slo != self.slo:
                            continue  # another SLO's or another suite's burn service (one bus for all)
                        with self._lock:
                            self._events.append({
                                "ce_id": event.id, "ce_type": event.type, "ce_source": event.source,
                                "ce_time": str(event.time) if event.time else None, "topic": INCIDENTS,
                                "partition": partition.partition, "offset": record.offset,
                                "incident_id": payload.incident_id, "slo": payload.slo, "service": payload.service,
                                "status": payload.status, "summary": payload.summary,
                                "read_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
