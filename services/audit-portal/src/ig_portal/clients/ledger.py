"""Appending access entries to the provenance ledger and reading them back for the access log."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
import structlog
from ig.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from ig_common.grpc_client import RenewingStub
from prometheus_client import Counter

from ig_portal.domain.access import LEDGER_KIND, AccessEntry, UnreadableEntry, ledger_subject

log = structlog.get_logger(__name__)
UNREADABLE = Counter("ig_portal_access_log_unreadable_entries_total",
                     "Ledger entries of the access kind skipped by the access-log reader because they do not parse")


class LedgerUnavailable(Exception):
    """The ledger did not take the entry: the request must fail closed."""


@dataclass(frozen=True)
class RecordedAccess:
    seq: int
    entry_hash: str
    entry: AccessEntry


class AccessLedger:
    def __init__(self, stubs: RenewingStub[ledger_pb2_grpc.LedgerServiceStub], timeout: float = 5.0) -> None:
        self._stubs = stubs
        self.timeout = timeout

    @property
    def stub(self) -> ledger_pb2_grpc.LedgerServiceStub:
        return self._stubs.get()

    async def append(self, entry: AccessEntry) -> int:
        request = ledger_pb2.AppendRequest(kind=LEDGER_KIND, subject=ledger_subject(entry.tenant, entry.release),
                                           payload=entry.payload())
        try:
            reply = await self.stub.Append(request, timeout=self.timeout)
        except grpc.aio.AioRpcError as error:
            raise LedgerUnavailable(f"ledger append failed: {error.code().name} {error.details()}") from error
        if reply.entry.seq <= 0:
            raise LedgerUnavailable("ledger answered without a sequence number")
        return int(reply.entry.seq)

    async def accesses(self, tenant: str, release: str, page_size: int = 1000) -> list[RecordedAccess]:
        """Every access entry recorded for ``tenant``'s ``release``, oldest first (paged by sequence number)."""
        found: list[RecordedAccess] = []
        from_seq = 0
        while True:
            request = ledger_pb2.ListRequest(kind=LEDGER_KIND, subject=ledger_subject(tenant, release),
                                             from_seq=from_seq, page_size=page_size)
            try:
                reply = await self.stub.List(request, timeout=self.timeout)
            except grpc.aio.AioRpcError as error:
                raise LedgerUnavailable(f"ledger list failed: {error.code().name} {error.details()}") from error
            for item in reply.entries:
                try:
                    entry = AccessEntry.from_payload(item.payload)
                except UnreadableEntry as error:
                    # One bad entry must not take the whole log down for good: skipped, counted, logged.
                    UNREADABLE.inc()
                    log.warning("access_log_entry_unreadable", seq=int(item.seq), error=str(error))
                    continue
                if entry.tenant == tenant and entry.release == release:
                    found.append(RecordedAccess(int(item.seq), item.entry_hash, entry))
            if len(reply.entries) < page_size:
                return found
            from_seq = int(reply.entries[-1].seq) + 1
