"""Driving the suite's ig.migration.v1.MigrationService as the release flow's workload (`release`, mTLS): Submit
with the approver's signature, Run while following the Status stream, Backout; and reading what the service
published on ig.migration.v1 for the run."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format
from ig.events.v1 import events_pb2
from ig.migration.v1 import migration_pb2, migration_pb2_grpc
from ig_common.events.envelope import from_kafka_record
from ig_common.events.topics import MIGRATION
from ig_common.grpc_client import aio_channel_as

from ig_release.context import StageFailed

# The table grants MigrationService's methods to the operator and this identity only (policies/authz).
CLIENT_IDENTITY = "release"
FINISHED = ("completed", "failed", "backed-out")
# The relay publishes the outbox a moment after the commit: how long to wait for the run's last event.
EVENTS_GRACE_SECONDS = 30.0


def signed_by_local_approver(plan_yaml: str) -> str:
    """The plan's detached signature by the local suite's `approver` (its plan-signing key in the run dir, the one
    key IG_MIGRATION_APPROVERS lists): submitted by `release`, approved by someone else, as Run requires."""
    from ig_infra.approver import approver_signing_key
    from ig_infra.paths import Paths
    from ig_migration.domain.approval import private_key_from_pem, sign_plan

    key = approver_signing_key(Paths.from_environment().run)
    if not key.is_file():
        raise StageFailed(f"no approver signing key at {key}: start the suite with `ig-infra up` (it makes one)")
    return sign_plan(private_key_from_pem(key.read_bytes()), plan_yaml)


def _status_json(update: migration_pb2.StatusResponse) -> dict[str, Any]:
    return {"phase": update.phase, "state": update.state, "done": update.done, "total": update.total,
            "rows_per_second": round(update.rows_per_second, 1), "run_id": update.run_id,
            "updated_at": update.updated_at.ToJsonString(), "detail": update.detail}


@dataclass
class EventLog:
    """ig.migration.v1 events of one change, read by the bus's reader identity from a moment on."""

    change: str
    events: list[dict[str, Any]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def of_run(self, run_id: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["run_id"] == run_id]

    def finished(self, run_id: str) -> bool:
        return any(e["to_phase"] in FINISHED for e in self.of_run(run_id))

    async def wait_finished(self, run_id: str) -> None:
        """Until the run's last event (completed, failed, backed-out) has been read; bound it with a timeout."""
        while not self.finished(run_id):
            self.arrived.clear()
            await self.arrived.wait()

    async def follow(self, bootstrap: str, since: float, stop: asyncio.Event) -> None:
        from ig_infra.kafka_reading import consumer_at

        async with consumer_at(bootstrap, MIGRATION, since=since) as consumer:
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=500)
                for partition, records in batches.items():
                    for record in records:
                        event = from_kafka_record(record.topic, record.key, record.value, list(record.headers))
                        if event.subject != self.change:
                            continue
                        payload = event.parse(events_pb2.MigrationPhaseChanged())
                        self.events.append({
                            "ce_id": event.id, "ce_type": event.type, "ce_source": event.source,
                            "ce_time": str(event.time) if event.time else None,
                            "partition": partition.partition, "offset": record.offset, "run_id": payload.run_id,
                            "from_phase": payload.from_phase, "to_phase": payload.to_phase,
                            "detail": payload.detail})
                        self.arrived.set()


@dataclass
class ServiceRun:
    """What the service said about one run: Submit's and Run's answers, every Status update, the events."""

    submitted: dict[str, Any]
    result: migration_pb2.RunResponse
    statuses: list[dict[str, Any]]
    events: list[dict[str, Any]]

    def as_json(self, address: str) -> dict[str, Any]:
        return {"service": address, "client_identity": CLIENT_IDENTITY, "run_id": self.result.run_id,
                "submit": self.submitted,
                "run": json_format.MessageToDict(self.result, preserving_proto_field_name=True),
                "status_stream": self.statuses, "states_seen": _distinct_states(self.statuses),
                "events_topic": MIGRATION, "events": self.events}


def _distinct_states(statuses: list[dict[str, Any]]) -> list[str]:
    seen: list[str] = []
    for status in statuses:
        label = f"{status['phase']}/{status['state']}"
        if not seen or seen[-1] != label:
            seen.append(label)
    return seen


class MigrationClient:
    def __init__(self, address: str, channel: grpc.aio.Channel) -> None:
        self.address = address
        self.stub = migration_pb2_grpc.MigrationServiceStub(channel)  # type: ignore[no-untyped-call]

    async def known(self, change: str) -> migration_pb2.StatusResponse | None:
        """The change's current status, None when the service never saw it."""
        try:
            updates = [u async for u in self.stub.Status(migration_pb2.StatusRequest(change=change), timeout=30)]
        except grpc.aio.AioRpcError as error:
            if error.code() is grpc.StatusCode.NOT_FOUND:
                return None
            raise
        return updates[-1] if updates else None

    async def backout(self, change: str, batches: list[int] | None = None) -> migration_pb2.BackoutResponse:
        response: migration_pb2.BackoutResponse = await self.stub.Backout(
            migration_pb2.BackoutRequest(change=change, batches=batches or []), timeout=300)
        return response

    async def submit_and_run(self, plan_yaml: str, signature: str, kafka_bootstrap: str) -> ServiceRun:
        """Submit, then Run while the Status stream is followed from a second call and ig.migration.v1 is read
        from the moment before Submit; returns when the run has stopped and its last event has arrived."""
        events_stop = asyncio.Event()
        since = time.time() - 1  # the broker's clock is this machine's; a second's margin costs nothing
        submitted = await self.stub.Submit(migration_pb2.SubmitRequest(plan_yaml=plan_yaml, signature=signature),
                                           timeout=30)
        log = EventLog(submitted.change)
        reading = asyncio.create_task(log.follow(kafka_bootstrap, since, events_stop))
        statuses: list[dict[str, Any]] = []
        following = asyncio.create_task(self._follow(submitted.change, statuses))
        try:
            result = await self.stub.Run(migration_pb2.RunRequest(change=submitted.change), timeout=900)
            await asyncio.wait_for(following, timeout=60)
            with contextlib.suppress(TimeoutError):  # check_run names what is missing
                await asyncio.wait_for(log.wait_finished(result.run_id), EVENTS_GRACE_SECONDS)
        except BaseException:
            following.cancel()
            events_stop.set()
            with contextlib.suppress(Exception):
                await reading
            raise
        events_stop.set()
        try:
            await reading
        except Exception as error:  # no partitions, TLS, an ACL: the evidence cannot be read, say why
            raise StageFailed(f"reading {MIGRATION} at {kafka_bootstrap} failed: {error!r}") from error
        return ServiceRun({"change": submitted.change, "plan_sha256": submitted.plan_sha256,
                           "submitted_by": submitted.submitted_by}, result, statuses, log.of_run(result.run_id))

    async def _follow(self, change: str, into: list[dict[str, Any]]) -> None:
        async for update in self.stub.Status(migration_pb2.StatusRequest(change=change, follow=True)):
            into.append(_status_json(update))


@asynccontextmanager
async def migration_client(address: str) -> AsyncIterator[MigrationClient]:
    async with aio_channel_as(CLIENT_IDENTITY, address) as channel:
        yield MigrationClient(address, channel)


def rpc_failure(error: grpc.aio.AioRpcError, what: str, log: Path | None = None) -> StageFailed:
    return StageFailed(f"MigrationService {what}: {error.code().name} {error.details()}", log)
