"""Anchoring a manifest in the provenance ledger over gRPC (the CLI's side of LedgerService)."""

from __future__ import annotations

from datetime import UTC
from typing import Any

import grpc
from ig.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from ig_common.grpc_client import channel_as

from ig_evidence.domain.anchoring import ledger_section
from ig_evidence.domain.chain import format_ts
from ig_evidence.domain.witnessed import WitnessedCheckpoint


class LedgerUnavailable(RuntimeError):
    pass


def entry_json(entry: ledger_pb2.Entry) -> dict[str, Any]:
    return {"seq": entry.seq, "ts": format_ts(entry.ts.ToDatetime(tzinfo=UTC)), "kind": entry.kind,
            "subject": entry.subject, "payloadSha256": entry.payload_sha256, "prevHash": entry.prev_hash,
            "entryHash": entry.entry_hash}


# ig-evidence build runs in the release job: the ledger takes evidence.manifest entries from the release identity.
CLIENT_IDENTITY = "release"


class GrpcLedgerAnchor:
    """Appends for ``tenant`` (deduplicated, so a rebuild reuses the entry) and fetches the checkpoint + inclusion
    proof. The ledger takes the entry only when the release identity may act for the tenant and the tenant is not
    pinned to another region than the ledger's."""

    def __init__(self, target: str, tenant: str, timeout: float = 15.0) -> None:
        self._target = target
        self._tenant = tenant
        self._timeout = timeout

    def __call__(self, kind: str, subject: str, payload: bytes) -> dict[str, Any]:
        try:
            with channel_as(CLIENT_IDENTITY, self._target) as channel:
                stub = ledger_pb2_grpc.LedgerServiceStub(channel)
                appended = stub.Append(ledger_pb2.AppendRequest(kind=kind, subject=subject, payload=payload,
                                                                deduplicate=True, tenant=self._tenant),
                                       timeout=self._timeout)
                seq = appended.entry.seq
                # The checkpoint of the tree that ends with this entry: the same entry always yields the same
                # (deterministically signed) checkpoint and proof, which keeps rebuilds byte-identical.
                checkpoint = stub.Checkpoint(ledger_pb2.CheckpointRequest(tree_size=seq), timeout=self._timeout)
                proof = stub.InclusionProof(ledger_pb2.InclusionProofRequest(seq=seq, tree_size=seq),
                                            timeout=self._timeout)
        except grpc.RpcError as error:
            raise LedgerUnavailable(f"ledger at {self._target}: {error.code().name}: {error.details()}") from error
        return ledger_section(entry=entry_json(appended.entry), checkpoint_note=checkpoint.note,
                              verifier_key=checkpoint.verifier_key, leaf_index=proof.leaf_index,
                              tree_size=proof.tree_size, proof_hashes=list(proof.hashes))


def witnessed_head(target: str, from_sizes: list[int], timeout: float = 15.0) -> WitnessedCheckpoint:
    """The ledger's head checkpoint with its witnesses' cosignatures, and consistency proofs to it from
    ``from_sizes`` (the sizes bundles are anchored at), for ``ig-evidence verify --checkpoint``."""
    try:
        with channel_as(CLIENT_IDENTITY, target) as channel:
            stub = ledger_pb2_grpc.LedgerServiceStub(channel)
            head = stub.Checkpoint(ledger_pb2.CheckpointRequest(), timeout=timeout)
            proofs = {}
            for size in sorted(set(from_sizes)):
                if 0 < size < head.tree_size:
                    reply = stub.ConsistencyProof(ledger_pb2.ConsistencyProofRequest(
                        first_size=size, second_size=head.tree_size), timeout=timeout)
                    proofs[size] = tuple(bytes.fromhex(h) for h in reply.hashes)
    except grpc.RpcError as error:
        raise LedgerUnavailable(f"ledger at {target}: {error.code().name}: {error.details()}") from error
    return WitnessedCheckpoint(head.cosigned_note or head.note, head.verifier_key, proofs)
