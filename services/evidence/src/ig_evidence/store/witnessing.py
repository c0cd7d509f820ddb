"""The ledger's side of c2sp.org/tlog-witness: each new head checkpoint goes to every configured witness with a
consistency proof from the size that witness last cosigned; the cosignatures that come back are checked against
the witness's key and stored (migration 0008), and the Checkpoint RPC hands them out appended to the note.

Nothing here is on the append path: appends never wait for a witness. Submission runs in one background task per
witness, which always submits the newest head it was told about (heads stored meanwhile are skipped, not queued),
so a witness that is down or slow costs a failed request per head and a log line, nothing else; the Checkpoint RPC
of a head waits for the witnesses' answers at most ``IG_WITNESS_TIMEOUT_SECONDS`` and then hands out what it has.
A witness that comes back is caught up by the next head (its 409 names the size it has; the proof starts there).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import httpx
import structlog
from ig_common.http_client import WorkloadTokenAuth
from ig_common.tls import WorkloadCertificate
from prometheus_client import Counter

from ig_evidence.domain.cosignature import Cosigner, verified_cosignatures, with_cosignatures
from ig_evidence.domain.note import NoteError, parse_checkpoint_body
from ig_evidence.domain.witness import encode_add_checkpoint

log = structlog.get_logger(__name__)
SUBMISSIONS = Counter("ig_ledger_witness_submissions_total", "Checkpoints submitted to witnesses, by outcome",
                      ["witness", "outcome"])
TLOG_SIZE = "text/x.tlog.size"

ConsistencyProof = Callable[[int, int], Awaitable[list[bytes]]]


@dataclass(frozen=True)
class WitnessEndpoint:
    """A witness the ledger submits to: where (the URL prefix of add-checkpoint), who (its cosigner key, which
    names it) and the workload identity its HTTPS listener runs as (the audience of the workload token)."""

    url: str
    cosigner: Cosigner
    identity: str = "witness"


@dataclass(frozen=True)
class _Head:
    size: int
    note: str


class _Submitter:
    """One witness's background task: submit the newest head, remember the size the witness holds."""

    def __init__(self, owner: Witnessing, endpoint: WitnessEndpoint) -> None:
        self.owner = owner
        self.endpoint = endpoint
        self.wanted: _Head | None = None
        self.settled = 0  # the largest head size for which an attempt finished (cosigned or not)
        self.witness_size: int | None = None  # what the witness last cosigned, as far as this replica knows
        self.wake = asyncio.Event()

    async def run(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            head = self.wanted
            if head is None:
                continue
            try:
                await self.submit(head)
            except Exception as error:  # a witness's failure must never stop the ledger; it is retried next head
                SUBMISSIONS.labels(self.endpoint.cosigner.name, "error").inc()
                log.warning("witness_submission_failed", witness=self.endpoint.cosigner.name,
                            url=self.endpoint.url, tree_size=head.size, error=repr(error))
            self.settled = max(self.settled, head.size)
            await self.owner.attempt_finished()

    async def submit(self, head: _Head) -> None:
        name = self.endpoint.cosigner.name
        if self.witness_size is None:
            self.witness_size = await self.owner.last_cosigned_size(name)
        async with self.owner.client_for(self.endpoint) as client:
            for _ in range(2):  # the second try starts from the size a 409 named
                old = self.witness_size
                if old > head.size:
                    SUBMISSIONS.labels(name, "witness_ahead").inc()
                    return
                proof = await self.owner.consistency_proof(old, head.size) if old else []
                response = await client.post("/add-checkpoint", content=encode_add_checkpoint(old, proof, head.note))
                if response.status_code == 409 and response.headers.get("content-type", "").startswith(TLOG_SIZE):
                    self.witness_size = int(response.text.strip())
                    continue
                if response.status_code != 200:
                    SUBMISSIONS.labels(name, str(response.status_code)).inc()
                    log.warning("witness_refused_checkpoint", witness=name, status=response.status_code,
                                tree_size=head.size, old_size=old, detail=response.text[:500])
                    return
                await self.owner.store(head, self.endpoint.cosigner, response.text)
                self.witness_size = head.size
                SUBMISSIONS.labels(name, "cosigned").inc()
                return
        SUBMISSIONS.labels(name, "conflict").inc()


class Witnessing:
    def __init__(self, pool: asyncpg.Pool, schema: str, endpoints: Sequence[WitnessEndpoint],
                 certificate: WorkloadCertificate | None, *, timeout: float = 2.0,
                 consistency_proof: ConsistencyProof | None = None) -> None:
        self._pool = pool
        self._schema = schema
        self._certificate = certificate
        self.timeout = timeout
        self._consistency_proof = consistency_proof
        self._submitters = [_Submitter(self, endpoint) for endpoint in endpoints]
        self._tasks: list[asyncio.Task[None]] = []
        self._attempts = asyncio.Condition()

    @property
    def endpoints(self) -> list[WitnessEndpoint]:
        return [s.endpoint for s in self._submitters]

    def bind(self, consistency_proof: ConsistencyProof) -> None:
        """The ledger's consistency proofs (set once the ledger exists: the ledger's hook calls into this)."""
        self._consistency_proof = consistency_proof

    async def consistency_proof(self, old: int, new: int) -> list[bytes]:
        assert self._consistency_proof is not None, "Witnessing.bind was not called"
        return await self._consistency_proof(old, new)

    def client_for(self, endpoint: WitnessEndpoint) -> httpx.AsyncClient:
        # A client per submission: checkpoints are rare next to appends, and a new client picks up a renewed
        # certificate (an httpx client keeps the TLS context it was made with).
        assert self._certificate is not None
        return httpx.AsyncClient(base_url=endpoint.url.rstrip("/"), verify=self._certificate.client_ssl_context(),
                                 auth=WorkloadTokenAuth(self._certificate,
                                                        self._certificate.spiffe_id.sibling(endpoint.identity)),
                                 timeout=self.timeout * 5)

    async def run(self) -> None:
        """The submitters, until cancelled (a service background task)."""
        self._tasks = [asyncio.ensure_future(s.run()) for s in self._submitters]
        try:
            await asyncio.gather(*self._tasks)
        finally:
            for task in self._tasks:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*self._tasks, return_exceptions=True)

    async def attempt_finished(self) -> None:
        async with self._attempts:
            self._attempts.notify_all()

    # -- the ledger's hook ---------------------------------------------------------------------------------------
    def head_stored(self, size: int, note: str) -> None:
        """Called by the ledger when it stored a head checkpoint: returns at once, submission is in the background."""
        for submitter in self._submitters:
            # A head this witness already cosigned is not sent again; the same head after a failed attempt is.
            if size > (submitter.witness_size or 0) and (submitter.wanted is None or submitter.wanted.size <= size):
                submitter.wanted = _Head(size, note)
                submitter.wake.set()

    async def cosigned(self, size: int, note: str, *, wait: bool) -> str:
        """``note`` with the stored cosignatures of its size appended; ``wait``: first give the witnesses up to
        ``timeout`` seconds to answer for this size."""
        if wait and self._submitters:
            def answered() -> bool:
                return all(s.settled >= size or s.wanted is None or s.wanted.size < size for s in self._submitters)

            async with self._attempts:
                with contextlib.suppress(TimeoutError):  # asyncio.timeout, not wait_for: see lifecycle.wait_at_most
                    async with asyncio.timeout(self.timeout):
                        await self._attempts.wait_for(answered)
        rows = await self._pool.fetch(
            f"SELECT cosignature FROM {self._schema}.ledger_cosignatures WHERE tree_size = $1 ORDER BY witness",
            size)
        lines = [r["cosignature"] for r in rows]
        try:
            # Only lines that still verify for this note's body and a configured witness key are handed out.
            valid = verified_cosignatures(with_cosignatures(note, lines),
                                          [s.endpoint.cosigner for s in self._submitters])
        except NoteError as error:
            log.error("stored_cosignature_invalid", tree_size=size, error=str(error))
            return note
        return with_cosignatures(note, [c.line for c in valid])

    # -- storage -------------------------------------------------------------------------------------------------
    async def last_cosigned_size(self, witness: str) -> int:
        size = await self._pool.fetchval(
            f"SELECT max(tree_size) FROM {self._schema}.ledger_cosignatures WHERE witness = $1", witness)
        return int(size or 0)

    async def store(self, head: _Head, cosigner: Cosigner, answer: str) -> None:
        """Keep the witness's cosignature on ``head`` if it verifies with that witness's key; refuse it otherwise."""
        lines = [line + "\n" for line in answer.splitlines() if line]
        found = verified_cosignatures(with_cosignatures(head.note, lines), [cosigner])
        if not found:
            raise NoteError(f"witness {cosigner.name} answered no valid cosignature: {answer[:200]!r}")
        root = parse_checkpoint_body(head.note.partition("\n\n")[0] + "\n").root_hash.hex()
        for cosignature in found:
            await self._pool.execute(
                f"""INSERT INTO {self._schema}.ledger_cosignatures
                        (tree_size, root_hash, witness, key_id, cosignature, cosigned_at)
                    VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING""",
                head.size, root, cosignature.witness, cosigner.key_id.hex(), cosignature.line,
                datetime.fromtimestamp(cosignature.timestamp, UTC))
