"""gRPC ig.ledger.v1.LedgerService: validate, translate, call the ledger store."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from ig.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from ig_common.authz import AuthorizationTable, current_caller
from opentelemetry import trace
from prometheus_client import Counter

from ig_evidence.api.residency import ResidencyGate
from ig_evidence.api.tenants import admit_append_for, admit_ledger_read_for
from ig_evidence.domain.chain import StoredEntry, validate_append
from ig_evidence.domain.merkle import ProofError
from ig_evidence.store.ledger import Append, LedgerError, LedgerStore
from ig_evidence.store.tiles import IntegrationPending
from ig_evidence.store.witnessing import Witnessing

tracer = trace.get_tracer(__name__)
FOREIGN_KIND_REFUSED = Counter("ig_ledger_foreign_kind_refused_total",
                               "Appends refused because the caller does not own the entry kind")
MAX_PAYLOAD = 1 << 20
MAX_PAGE = 1000
MAX_BATCH_ENTRIES = 1000

Context = grpc.aio.ServicerContext[Any, Any]


def to_proto(entry: StoredEntry, with_payload: bool = True) -> ledger_pb2.Entry:
    ts = Timestamp()
    ts.FromDatetime(entry.fields.ts)
    return ledger_pb2.Entry(seq=entry.fields.seq, ts=ts, kind=entry.fields.kind, subject=entry.fields.subject,
                            payload_sha256=entry.fields.payload_sha256, prev_hash=entry.fields.prev_hash,
                            entry_hash=entry.entry_hash, payload=entry.payload if with_payload else b"")


async def _invalid(context: Context, message: str) -> None:
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, message)


class LedgerServicer(ledger_pb2_grpc.LedgerServiceServicer):
    def __init__(self, store: LedgerStore, owners: AuthorizationTable, witnessing: Witnessing | None = None, *,
                 residency: ResidencyGate) -> None:
        self._store = store
        self._owners = owners
        self._witnessing = witnessing
        # Appends and the entry reads (Get, List) name their tenant, admitted for the verified caller and this region
        # before the store is asked (api/tenants.py); the tenant is recorded beside each entry and reads return only
        # that tenant's. The Merkle-level reads carry hashes, not payloads: they name no tenant, and residency judges
        # them only when they forward a user (ResidencyGate.admit_forwarded_user).
        self._residency = residency

    async def Append(self, request: ledger_pb2.AppendRequest, context: Context) -> ledger_pb2.AppendResponse:
        await admit_append_for(request.tenant, context, self._residency, field="tenant", method="Append")
        if len(request.payload) > MAX_PAYLOAD:
            await _invalid(context, f"payload: {len(request.payload)} bytes exceeds {MAX_PAYLOAD}")
        try:
            validate_append(request.kind, request.subject)
        except ValueError as error:
            await _invalid(context, str(error))
        caller = current_caller().workload
        if not self._owners.may_append(request.kind, caller.name):
            # An append-only ledger keeps whatever it takes for good: a kind is accepted only from its owner.
            FOREIGN_KIND_REFUSED.inc()
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                f"kind: {caller} may not append {request.kind!r} entries")
        with tracer.start_as_current_span("ledger.append") as span:
            span.set_attribute("ig.ledger.kind", request.kind)
            try:
                entry, existing = await self._store.append(request.kind, request.subject, request.payload,
                                                           deduplicate=request.deduplicate, tenant=request.tenant)
            except ValueError as error:
                await _invalid(context, str(error))
                raise
            span.set_attribute("ig.ledger.seq", entry.fields.seq)
        return ledger_pb2.AppendResponse(entry=to_proto(entry), existing=existing)

    async def AppendBatch(self, request: ledger_pb2.AppendBatchRequest,
                          context: Context) -> ledger_pb2.AppendBatchResponse:
        if not 1 <= len(request.entries) <= MAX_BATCH_ENTRIES:
            await _invalid(context, f"entries: 1..{MAX_BATCH_ENTRIES} per call, not {len(request.entries)}")
        caller = current_caller().workload
        admitted: set[str] = set()  # a batch usually names one tenant: judged once
        for index, item in enumerate(request.entries):  # every entry checked before any is queued
            if item.tenant not in admitted:
                admitted.add(await admit_append_for(item.tenant, context, self._residency,
                                                    field=f"entries[{index}].tenant", method="AppendBatch"))
            if len(item.payload) > MAX_PAYLOAD:
                await _invalid(context, f"entries[{index}].payload: {len(item.payload)} bytes exceeds {MAX_PAYLOAD}")
            try:
                validate_append(item.kind, item.subject)
            except ValueError as error:
                await _invalid(context, f"entries[{index}]: {error}")
            if not self._owners.may_append(item.kind, caller.name):
                FOREIGN_KIND_REFUSED.inc()
                await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                    f"entries[{index}].kind: {caller} may not append {item.kind!r} entries")
        with tracer.start_as_current_span("ledger.append_batch") as span:
            span.set_attribute("ig.ledger.entries", len(request.entries))
            # One group: committed in one transaction, in request order, or not at all.
            appended = await self._store.append_many([Append(item.kind, item.subject, item.payload, item.deduplicate,
                                                             item.tenant) for item in request.entries])
        return ledger_pb2.AppendBatchResponse(entries=[ledger_pb2.AppendResponse(entry=to_proto(entry),
                                                                                 existing=existing)
                                                       for entry, existing in appended])

    async def Get(self, request: ledger_pb2.GetRequest, context: Context) -> ledger_pb2.GetResponse:
        tenant = await admit_ledger_read_for(request.tenant, context, self._residency, self._owners, method="Get")
        if request.seq < 1:
            await _invalid(context, "seq: must be >= 1")
        try:
            # Another tenant's entry is NOT_FOUND, as a seq beyond the head: the answer does not tell them apart.
            return ledger_pb2.GetResponse(entry=to_proto(await self._store.get(request.seq, tenant=tenant)))
        except LedgerError as error:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(error))
            raise

    async def List(self, request: ledger_pb2.ListRequest, context: Context) -> ledger_pb2.ListResponse:
        tenant = await admit_ledger_read_for(request.tenant, context, self._residency, self._owners, method="List")
        if request.from_seq < 0 or request.to_seq < 0:
            await _invalid(context, "from_seq/to_seq: must be >= 0")
        if request.to_seq and request.to_seq < request.from_seq:
            await _invalid(context, "to_seq: must not be below from_seq")
        if not 0 <= request.page_size <= MAX_PAGE:
            await _invalid(context, f"page_size: must be 0..{MAX_PAGE}")
        entries = await self._store.list(tenant=tenant, kind=request.kind, subject=request.subject,
                                         from_seq=request.from_seq, to_seq=request.to_seq,
                                         limit=request.page_size or 100)
        return ledger_pb2.ListResponse(entries=[to_proto(e) for e in entries])

    async def Checkpoint(self, request: ledger_pb2.CheckpointRequest,
                         context: Context) -> ledger_pb2.CheckpointResponse:
        await self._residency.admit_forwarded_user(context, method="Checkpoint")
        if request.tree_size < 0:
            await _invalid(context, "tree_size: must be >= 0")
        try:
            size, root, note, created = await self._store.checkpoint(request.tree_size)
        except IntegrationPending as error:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(error))
            raise
        except LedgerError as error:
            await _invalid(context, str(error))
            raise
        ts = Timestamp()
        ts.FromDatetime(created)
        # The head (tree_size 0) waits briefly for the witnesses it was just sent to; a past size never waits.
        cosigned = (await self._witnessing.cosigned(size, note, wait=request.tree_size == 0)
                    if self._witnessing is not None else note)
        return ledger_pb2.CheckpointResponse(tree_size=size, root_hash=root.hex(), ts=ts, note=note,
                                             verifier_key=self._store.verifier_for(note) or
                                             self._store.signer.verifier_key,
                                             origin=self._store.signer.origin, cosigned_note=cosigned)

    async def InclusionProof(self, request: ledger_pb2.InclusionProofRequest,
                             context: Context) -> ledger_pb2.InclusionProofResponse:
        await self._residency.admit_forwarded_user(context, method="InclusionProof")
        if request.seq < 1 or request.tree_size < 0:
            await _invalid(context, "seq: must be >= 1 (tree_size >= 0, 0 = current)")
        try:
            size, path, root, leaf = await self._store.inclusion_proof(request.seq, request.tree_size)
        except IntegrationPending as error:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(error))
            raise
        except (LedgerError, ProofError) as error:
            await _invalid(context, str(error))
            raise
        return ledger_pb2.InclusionProofResponse(leaf_index=request.seq - 1, tree_size=size,
                                                 hashes=[h.hex() for h in path], root_hash=root.hex(),
                                                 leaf_hash=leaf.hex())

    async def ConsistencyProof(self, request: ledger_pb2.ConsistencyProofRequest,
                               context: Context) -> ledger_pb2.ConsistencyProofResponse:
        await self._residency.admit_forwarded_user(context, method="ConsistencyProof")
        try:
            path = await self._store.consistency_proof(request.first_size, request.second_size)
        except IntegrationPending as error:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(error))
            raise
        except (LedgerError, ProofError) as error:
            await _invalid(context, str(error))
            raise
        return ledger_pb2.ConsistencyProofResponse(hashes=[h.hex() for h in path])

    async def Verify(self, request: ledger_pb2.VerifyRequest, context: Context) -> ledger_pb2.VerifyResponse:
        await self._residency.admit_forwarded_user(context, method="Verify")
        with tracer.start_as_current_span("ledger.verify") as span:
            report = await self._store.verify()
            span.set_attribute("ig.ledger.ok", report.ok)
        return ledger_pb2.VerifyResponse(ok=report.ok, entries_checked=report.entries_checked,
                                         first_bad_seq=report.first_bad_seq, message=report.message)
