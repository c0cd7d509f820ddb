"""The witness itself: decide (domain/witness.py), persist by compare-and-swap (store/witness_state.py), cosign.

Nothing is cosigned before the new head is durably stored, and nothing is stored that was not decided against the
head that is still stored (a lost race is a 409 with the winner's size).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import Counter

from ig_evidence.domain.cosignature import Cosigner, cosign
from ig_evidence.domain.witness import (
    TreeHead,
    WitnessedLog,
    WitnessRefusal,
    checkpoint_body,
    decide,
    parse_add_checkpoint,
)
from ig_evidence.store.witness_state import WitnessState

log = structlog.get_logger(__name__)
ADD_CHECKPOINT = Counter("ig_witness_add_checkpoint_total", "add-checkpoint requests by HTTP status", ["status"])


class Witness:
    def __init__(self, name: str, key: Ed25519PrivateKey, logs: Sequence[WitnessedLog], state: WitnessState,
                 clock: Callable[[], float] = time.time) -> None:
        self.name = name
        self._key = key
        self._logs = tuple(logs)
        self._state = state
        self._clock = clock
        self.cosigner = Cosigner(name, key.public_key())

    def add_checkpoint(self, body: bytes) -> str:
        """The cosignature line for the checkpoint in ``body``, or WitnessRefusal with the status to answer."""
        try:
            line = self._add_checkpoint(body)
        except WitnessRefusal as refusal:
            ADD_CHECKPOINT.labels(str(refusal.status)).inc()
            # A validly signed checkpoint that fails consistency may be evidence of a misbehaving log: keep a trace.
            log.warning("checkpoint_refused", status=refusal.status, detail=refusal.detail)
            raise
        ADD_CHECKPOINT.labels("200").inc()
        return line

    def _add_checkpoint(self, body: bytes) -> str:
        request = parse_add_checkpoint(body)
        origin = checkpoint_body(request.note).split("\n", 1)[0]
        latest = self._state.latest(origin)
        checkpoint = decide(request, self._logs, latest)
        # The whole body is cosigned, extension lines included, as cosignature/v1 requires.
        line = cosign(checkpoint_body(request.note), self.name, self._key, int(self._clock()))
        stored_now = self._state.advance(checkpoint.origin, latest, TreeHead(checkpoint.tree_size,
                                                                             checkpoint.root_hash),
                                         request.note + line)
        if stored_now is not None:
            raise WitnessRefusal(409, f"another checkpoint of {checkpoint.origin} was cosigned meanwhile "
                                 f"(size {stored_now.size})", latest_size=stored_now.size)
        log.info("checkpoint_cosigned", origin=checkpoint.origin, tree_size=checkpoint.tree_size,
                 old_size=request.old_size)
        return line

    def latest_checkpoint(self, origin: str) -> str | None:
        return self._state.latest_checkpoint(origin)

