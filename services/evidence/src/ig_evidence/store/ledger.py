"""The ledger in PostgreSQL: group-committed appends under the head row lock, reads, proofs, checkpoints, Verify.

Appends from concurrent callers are queued and written by one writer task in batches: each batch is one
transaction that locks the single ``ledger_head`` row, so seq assignment is serialised across every replica (the
insert trigger re-checks that each entry extends the head). Batching is what turns a serial lock into >1,000
appends/s; each caller still gets its own entry back only after its transaction committed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple, Protocol

import asyncpg
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from ig.events.v1 import events_pb2
from ig_common.events.envelope import new_event_ids
from prometheus_client import Counter, Histogram

from ig_evidence.domain import note
from ig_evidence.domain.chain import ChainReport, StoredEntry, next_entry, sha256_hex, validate_append
from ig_evidence.events import entry_appended
from ig_evidence.store.ledger_rows import COLUMNS, row_to_entry
from ig_evidence.store.ledger_verify import verify_ledger
from ig_evidence.store.tiles import TiledTree

log = structlog.get_logger(__name__)

LEDGER_APPENDS = Counter("ig_ledger_appends_total",
                         "Ledger entries appended, by the ledger_kinds row of the authorization table that covers "
                         "their kind (\"other\" when none does)", ["kind"])
LEDGER_BATCH = Histogram("ig_ledger_append_batch_size", "Entries per group-committed append transaction",
                         buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048))
LEDGER_HEAD_RETRIES = Counter("ig_ledger_head_retries_total",
                              "Append batches redone under the head lock because another writer moved the head")
LEDGER_COMMIT_SECONDS = Histogram("ig_ledger_append_commit_seconds",
                                  "Time to write and commit one group-committed append batch",
                                  buckets=(0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256))
MAX_BATCH = 1000


class LedgerError(ValueError):
    """A request the ledger cannot satisfy (unknown seq, size beyond the tree ...)."""


class Append(NamedTuple):
    """One entry to append; with ``deduplicate`` an entry of the same tenant, kind, subject and payload is returned
    instead. ``tenant`` is recorded beside the entry (not hashed); None attributes it to no tenant, which no
    Get/List reader can see (the API always names one)."""

    kind: str
    subject: str
    payload: bytes
    deduplicate: bool = False
    tenant: str | None = None


class _New(NamedTuple):
    """An entry this batch appends, with the tenant recorded beside it."""

    entry: StoredEntry
    tenant: str | None


@dataclass
class _Pending:
    """One caller's appends: queued, committed and answered together (never split across two transactions)."""

    appends: Sequence[Append]
    done: asyncio.Future[list[tuple[StoredEntry, bool]]]


class CheckpointSigning(Protocol):
    """What the ledger needs of its checkpoint key; a KMS- or HSM-backed signer would implement the same."""

    origin: str
    verifier_key: str  # the note verifier key (name+hash+base64) of the key that signs

    def sign(self, tree_size: int, root: bytes) -> str: ...


class CheckpointSigner:
    """A checkpoint key held in memory (read from its file by store/signing_key.py)."""

    def __init__(self, origin: str, key: Ed25519PrivateKey) -> None:
        self.origin = origin
        self.key = key
        self.verifier_key = note.verifier_key(origin, key.public_key())

    def sign(self, tree_size: int, root: bytes) -> str:
        return note.sign_checkpoint(note.Checkpoint(self.origin, tree_size, root), self.origin, self.key)


class LedgerStore:
    def __init__(self, pool: asyncpg.Pool, schema: str, signer: CheckpointSigning,
                 on_commit: Callable[[], None] = lambda: None, previous_verifier_keys: Sequence[str] = (),
                 on_head_checkpoint: Callable[[int, str], None] = lambda size, note: None,
                 kind_label: Callable[[str], str | None] = lambda kind: None, linger_seconds: float = 0.0) -> None:
        self._pool = pool
        self._schema = schema
        self.signer = signer
        # The current key first, then retired ones: a stored checkpoint is handed out with the one that signed it.
        self.verifier_keys = (signer.verifier_key, *previous_verifier_keys)
        self._on_commit = on_commit
        # Witnessing hook (store/witnessing.py): told of each head checkpoint handed out; must return at once.
        self._on_head_checkpoint = on_head_checkpoint
        # Kinds are chosen by callers (any kind below an owned "prefix.*"), so metrics label with the table row that
        # granted the kind: a label per kind would let a caller mint unbounded series.
        self._kind_label = kind_label
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        # Group commit: a statement (and its WAL flush) costs the same for 1 entry as for 8, so while several callers
        # are appending, the writer waits this long for more of them before it commits (Tessera batches the same
        # way). Only then: when the last batch held one caller's appends, nobody else is in flight to wait for.
        self._linger = linger_seconds
        self._callers_last_batch = 0
        self._writer: asyncio.Task[None] | None = None
        self._head: tuple[int, str] | None = None  # (size, head hash) after this writer's last commit
        self.tree = TiledTree(pool, schema)  # proofs and roots from tiles: nothing per leaf is kept in memory

    # -- appends -------------------------------------------------------------------------------------------
    async def append(self, kind: str, subject: str, payload: bytes, *, deduplicate: bool = False,
                     tenant: str | None = None) -> tuple[StoredEntry, bool]:
        """Returns the entry and whether it already existed (deduplicate only)."""
        return (await self.append_many([Append(kind, subject, payload, deduplicate, tenant)]))[0]

    async def append_many(self, appends: Sequence[Append]) -> list[tuple[StoredEntry, bool]]:
        """Appends in the given order, all in one transaction: every entry is committed, or none is."""
        for item in appends:
            validate_append(item.kind, item.subject)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._write_batches())
        done: asyncio.Future[list[tuple[StoredEntry, bool]]] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(appends, done))
        return await done

    async def serve_appends(self) -> None:
        """The writer loop, run as a service background task (appends start one lazily when nobody did)."""
        current = asyncio.current_task()
        assert current is not None
        self._writer = current
        await self._write_batches()

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        await self.tree.close()

    async def _write_batches(self) -> None:
        while True:
            batch = [await self._queue.get()]
            if self._linger and self._callers_last_batch > 1 and len(batch[0].appends) < MAX_BATCH:
                await asyncio.sleep(self._linger)
            entries = len(batch[0].appends)
            # A caller's group is never split, so one large group may take a batch past MAX_BATCH on its own.
            while entries < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
                entries += len(batch[-1].appends)
            self._callers_last_batch = len(batch)
            try:
                with LEDGER_COMMIT_SECONDS.time():
                    results = await self._commit([item for pending in batch for item in pending.appends])
            except Exception as error:  # every waiter learns why its append failed; the writer keeps going
                log.error("ledger_append_failed", error=str(error), batch=entries)
                for pending in batch:
                    if not pending.done.done():
                        pending.done.set_exception(error)
                continue
            self._on_commit()
            self.tree.wake()
            start = 0
            for pending in batch:
                end = start + len(pending.appends)
                if not pending.done.done():
                    pending.done.set_result(results[start:end])
                start = end

    async def _commit(self, batch: list[Append]) -> list[tuple[StoredEntry, bool]]:
        """One statement (one round trip) when this writer's cached head is current; if another replica moved the
        head, the insert trigger refuses it and the batch is redone in a transaction that locks the head row."""
        if self._head is not None:
            async with self._pool.acquire() as conn:
                results, new = await self._plan(conn, batch, *self._head)
                try:
                    await self._insert(conn, new)
                except asyncpg.IntegrityConstraintViolationError:
                    LEDGER_HEAD_RETRIES.inc()
                else:
                    return self._committed(batch, results, new)
        async with self._pool.acquire() as conn, conn.transaction():
            head = await conn.fetchrow(f"SELECT size, head_hash FROM {self._schema}.ledger_lock_head()")
            results, new = await self._plan(conn, batch, int(head["size"]), str(head["head_hash"]))
            await self._insert(conn, new)
        return self._committed(batch, results, new)

    async def _plan(self, conn: asyncpg.Connection, batch: list[Append], size: int, prev: str
                    ) -> tuple[list[tuple[StoredEntry, bool]], list[_New]]:
        results: list[tuple[StoredEntry, bool]] = []
        new: list[_New] = []
        for pending in batch:
            if pending.deduplicate:
                found = await self._find_same(conn, pending, new)
                if found is not None:
                    results.append((found, True))
                    continue
            fields, digest = next_entry(size, prev, datetime.now(UTC), pending.kind, pending.subject, pending.payload)
            entry = StoredEntry(fields=fields, entry_hash=digest, payload=pending.payload)
            new.append(_New(entry, pending.tenant))
            results.append((entry, False))
            size, prev = fields.seq, digest
        return results, new

    async def _insert(self, conn: asyncpg.Connection, planned: list[_New]) -> None:
        """Entries and their outbox events in one statement: both commit together or neither does."""
        if not planned:
            return
        new = [p.entry for p in planned]
        events = [entry_appended(events_pb2.LedgerEntryAppended(seq=e.fields.seq, kind=e.fields.kind,
                                                                subject=e.fields.subject, entry_hash=e.entry_hash),
                                 event_id)
                  for e, event_id in zip(new, new_event_ids(len(new)), strict=True)]
        s = self._schema
        # The outbox columns are ig_common's (see ig_common.events.outbox.enqueue_many); they are written here in
        # the same statement as the entries so that an append costs one round trip. The entries go in through
        # ledger_append, which runs as the ledger's owner: this role may only read the ledger's tables.
        await conn.execute(
            f"""WITH entries AS MATERIALIZED (
                    SELECT {s}.ledger_append($1::bigint[], $2::timestamptz[], $3::text[], $4::text[], $5::bytea[],
                                             $6::text[], $7::text[], $8::text[], $18::text[]) AS appended)
                INSERT INTO {s}.outbox (ce_id, topic, ce_type, ce_source, ce_subject, ce_time, message_key, payload)
                SELECT u.* FROM entries,
                    unnest($9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::timestamptz[],
                           $15::bytea[], $16::bytea[]) AS u
                WHERE entries.appended = $17""",
            [e.fields.seq for e in new], [e.fields.ts for e in new], [e.fields.kind for e in new],
            [e.fields.subject for e in new], [e.payload for e in new], [e.fields.payload_sha256 for e in new],
            [e.fields.prev_hash for e in new], [e.entry_hash for e in new],
            [e.id for e in events], [e.topic for e in events], [e.type for e in events], [e.source for e in events],
            [e.subject for e in events], [e.time for e in events],
            [e.key.encode() if e.key is not None else None for e in events],
            [e.payload.SerializeToString() for e in events], len(new), [p.tenant for p in planned])

    def _committed(self, batch: list[Append], results: list[tuple[StoredEntry, bool]], new: list[_New]
                   ) -> list[tuple[StoredEntry, bool]]:
        if new:
            self._head = (new[-1].entry.fields.seq, new[-1].entry.entry_hash)
        LEDGER_BATCH.observe(len(batch))
        for entry, _ in new:
            LEDGER_APPENDS.labels(self._kind_label(entry.fields.kind) or "other").inc()
        return results

    async def _find_same(self, conn: asyncpg.Connection, pending: Append, new: list[_New]
                         ) -> StoredEntry | None:
        """The same tenant's entry only: another tenant's (or an unattributed one) is never handed out."""
        digest = sha256_hex(pending.payload)
        for entry, tenant in new:
            if (entry.fields.kind, entry.fields.subject, entry.fields.payload_sha256, tenant) == \
                    (pending.kind, pending.subject, digest, pending.tenant):
                return entry
        row = await conn.fetchrow(
            f"SELECT {COLUMNS} FROM {self._schema}.ledger_entries WHERE kind = $1 AND subject = $2 "
            "AND payload_sha256 = $3 AND tenant IS NOT DISTINCT FROM $4 ORDER BY seq LIMIT 1",
            pending.kind, pending.subject, digest, pending.tenant)
        return row_to_entry(row) if row is not None else None

    # -- reads ---------------------------------------------------------------------------------------------
    async def size(self) -> int:
        return int(await self._pool.fetchval(f"SELECT size FROM {self._schema}.ledger_head WHERE singleton"))

    async def get(self, seq: int, *, tenant: str) -> StoredEntry:
        """Entry ``seq`` when it was appended for ``tenant``; another tenant's, an unattributed one and one that
        does not exist are the same LedgerError, so a reader learns nothing of what it may not read."""
        row = await self._pool.fetchrow(
            f"SELECT {COLUMNS} FROM {self._schema}.ledger_entries WHERE seq = $1 AND tenant = $2", seq, tenant)
        if row is None:
            raise LedgerError(f"seq: no ledger entry {seq} for tenant {tenant!r}")
        return row_to_entry(row)

    async def list(self, *, tenant: str, kind: str, subject: str, from_seq: int, to_seq: int, limit: int
                   ) -> list[StoredEntry]:
        """``tenant``'s entries only, in seq order."""
        rows = await self._pool.fetch(
            f"""SELECT {COLUMNS} FROM {self._schema}.ledger_entries
                WHERE tenant = $6 AND ($1 = '' OR kind = $1) AND ($2 = '' OR subject = $2) AND seq >= $3
                    AND ($4 = 0 OR seq <= $4)
                ORDER BY seq LIMIT $5""", kind, subject, max(from_seq, 1), to_seq, limit, tenant)
        return [row_to_entry(r) for r in rows]

    async def _sequenced(self, tree_size: int, name: str = "tree_size") -> tuple[int, bytes | None]:
        """``tree_size`` (0: the head), refused when beyond what was sequenced; then waits (bounded) until the tiles
        cover it (IntegrationPending when they do not in time). With its root when that is the integrated one."""
        seen, seen_root = self.tree.seen
        if 0 < tree_size <= seen:  # integrated already (the tree never shrinks): no read of the sizes needed
            return tree_size, seen_root if tree_size == seen else None
        head, integrated, root = await self.tree.sizes()
        size = tree_size or head
        if size > head:
            raise LedgerError(f"{name}: {size} is beyond the ledger's size")
        if size > integrated:
            integrated, root = await self.tree.wait_for(size)
        return size, root if size == integrated else None

    # -- checkpoints and proofs ----------------------------------------------------------------------------
    async def checkpoint(self, tree_size: int = 0) -> tuple[int, bytes, str, datetime]:
        """A signed checkpoint of ``tree_size`` (0 = the head). Only heads are stored: a past size is computed and
        signed on request, and since Ed25519 is deterministic it gets the same note every time."""
        if tree_size == 0 and await self.size() < 1:
            raise LedgerError("tree_size: the ledger is empty; nothing to checkpoint")
        size, known_root = await self._sequenced(tree_size)
        stored = await self._pool.fetchrow(
            f"SELECT root_hash, note, created_at FROM {self._schema}.ledger_checkpoints WHERE tree_size = $1", size)
        if stored is not None and self.verifier_for(stored["note"]) is not None:
            if not tree_size:
                self._on_head_checkpoint(size, stored["note"])
            return size, bytes.fromhex(stored["root_hash"]), stored["note"], stored["created_at"]
        root = known_root or await self.tree.root(size)
        signed = self.signer.sign(size, root)
        if stored is not None or (tree_size and tree_size != await self.size()):
            # A past size (not stored), or a stored one signed by a key this service no longer knows (the generated
            # one the database used to hold, or one rotated out without its verifier key configured): signed by the
            # current key and handed out; the stored row, if any, stays as it is (append-only).
            return size, root, signed, datetime.now(UTC)
        await self._pool.execute(
            f"""INSERT INTO {self._schema}.ledger_checkpoints (tree_size, root_hash, note) VALUES ($1, $2, $3)
                ON CONFLICT (tree_size) DO NOTHING""", size, root.hex(), signed)
        head = await self.checkpoint(size)
        self._on_head_checkpoint(size, head[2])
        return head

    async def latest_checkpoint(self) -> str:
        """The signed checkpoint of the integrated tree, never waiting for integration (the tlog-tiles /checkpoint)."""
        size, _ = await self.tree.integrated()
        if size < 1:
            raise LedgerError("tree_size: the ledger is empty; nothing to checkpoint")
        return (await self.checkpoint(size))[2]

    def verifier_for(self, signed_note: str) -> str | None:
        """The known verifier key (current or previous) whose signature ``signed_note`` carries, if any."""
        for key in self.verifier_keys:
            with contextlib.suppress(note.NoteError):
                note.open_checkpoint(signed_note, key)
                return key
        return None

    async def inclusion_proof(self, seq: int, tree_size: int) -> tuple[int, list[bytes], bytes, bytes]:
        size, known_root = await self._sequenced(tree_size)
        if not 1 <= seq <= size:
            raise LedgerError(f"seq: {seq} is not in a tree of size {size}")
        proof, root, leaf = await self.tree.inclusion(seq - 1, size, known_root)
        return size, proof, root, leaf

    async def consistency_proof(self, first_size: int, second_size: int) -> list[bytes]:
        second, _ = await self._sequenced(second_size, "second_size")
        if not 1 <= first_size <= second:
            raise LedgerError(f"first_size: must be in 1..{second}")
        return await self.tree.consistency(first_size, second)

    # -- verification --------------------------------------------------------------------------------------
    async def verify(self) -> ChainReport:
        """Re-read every entry (no cache), re-hash the chain, and re-check every stored checkpoint's root, every
        stored tile and the root the tiles were integrated to (store/ledger_verify.py)."""
        return await verify_ledger(self._pool, self._schema)
