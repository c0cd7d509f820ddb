"""The provenance ledger as the access log needs it: append an access, read access entries in seq order, the
signed checkpoint and inclusion proofs an export carries."""

from __future__ import annotations

from datetime import UTC

import grpc
from ig.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from ig_common.grpc_client import RenewingStub

from ig_portal.clients.forwarding import UserForwarding
from ig_portal.domain.access import LEDGER_KIND, AccessEntry, ledger_subject
from ig_portal.domain.access_log import LedgerRecord
from ig_portal.domain.identity import Principal


class LedgerUnavailable(Exception):
    """The ledger did not take the entry: the request must fail closed."""


def to_record(entry: ledger_pb2.Entry) -> LedgerRecord:
    return LedgerRecord(seq=int(entry.seq), ts=entry.ts.ToDatetime(tzinfo=UTC), kind=entry.kind,
                        subject=entry.subject, payload=bytes(entry.payload), prev_hash=entry.prev_hash,
                        entry_hash=entry.entry_hash)


class AccessLedger:
    def __init__(self, stubs: RenewingStub[ledger_pb2_grpc.LedgerServiceStub], users: UserForwarding,
                 timeout: float = 5.0) -> None:
        self._stubs = stubs
        self._users = users
        self.timeout = timeout

    @property
    def stub(self) -> ledger_pb2_grpc.LedgerServiceStub:
        return self._stubs.get()

    async def append(self, entry: AccessEntry, principal: Principal) -> LedgerRecord:
        """The entry as the ledger chained it (seq, time, hashes): the access log's row is projected from it.

        Appended for the principal's tenant, with the principal forwarded: the ledger takes an entry only for a
        tenant the verified caller acts for, and the portal acts for no tenant of its own."""
        request = ledger_pb2.AppendRequest(kind=LEDGER_KIND, subject=ledger_subject(entry.tenant, entry.release),
                                           payload=entry.payload(), tenant=principal.tenant)
        try:
            reply = await self.stub.Append(request, timeout=self.timeout, metadata=self._users.metadata(principal))
        except grpc.aio.AioRpcError as error:
            raise LedgerUnavailable(f"ledger append failed: {error.code().name} {error.details()}") from error
        if reply.entry.seq <= 0:
            raise LedgerUnavailable("ledger answered without a sequence number")
        return to_record(reply.entry)

    async def entries_from(self, tenant: str, from_seq: int, page_size: int = 1000) -> list[LedgerRecord]:
        """``tenant``'s access-kind entries from ``from_seq`` on, oldest first (the access log's feed).

        Read as the portal itself, no user forwarded: the ledger returns a tenant's entries to a workload only when
        the authorization table lets it read that tenant (``ledger_readers``)."""
        request = ledger_pb2.ListRequest(kind=LEDGER_KIND, from_seq=from_seq, page_size=page_size, tenant=tenant)
        try:
            reply = await self.stub.List(request, timeout=self.timeout)
        except grpc.aio.AioRpcError as error:
            raise LedgerUnavailable(f"ledger list failed: {error.code().name} {error.details()}") from error
        return [to_record(item) for item in reply.entries]

    async def checkpoint(self) -> ledger_pb2.CheckpointResponse:
        """The ledger's signed head checkpoint (with the witnesses' cosignatures where it has them)."""
        try:
            return await self.stub.Checkpoint(ledger_pb2.CheckpointRequest(), timeout=self.timeout)
        except grpc.aio.AioRpcError as error:
            raise LedgerUnavailable(f"ledger checkpoint failed: {error.code().name} {error.details()}") from error

    async def inclusion(self, seq: int, tree_size: int) -> list[str]:
        """The RFC 9162 inclusion proof (hex) of entry ``seq`` in the tree of ``tree_size``."""
        request = ledger_pb2.InclusionProofRequest(seq=seq, tree_size=tree_size)
        try:
            reply = await self.stub.InclusionProof(request, timeout=self.timeout)
        except grpc.aio.AioRpcError as error:
            raise LedgerUnavailable(f"ledger proof failed: {error.code().name} {error.details()}") from error
        return list(reply.hashes)
