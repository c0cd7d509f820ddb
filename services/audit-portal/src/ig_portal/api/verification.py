"""The release page's verification, done on the server with the evidence service's own offline verifier.

The portal fetches the release's verify kit exactly as an auditor would download it (GetVerifyKit: the bundle as
stored, the pinned signer's key, the ledger's head checkpoint and the proofs) and runs ``ig-evidence verify``'s
library function on it (``ig_evidence.bundle.kit.verify_kit``), pinning the signer's key id the evidence service's
configuration names and, when set, the ledger's checkpoint key. There is no second verifier here. Cosignatures on
the head are named only for witnesses whose keys the portal pins (``IG_WITNESS_KEYS``).

Caching (``IG_VERIFICATION_CACHE_SECONDS``): a result that verified is reused per (tenant, release, manifest
SHA-256) for that long; a result that did not verify, or could not be had, is never reused. So a bundle tampered
with in storage shows as not verifying on the first view after the cached success expires (and at once when no
success is cached); the verify kit download is always assembled afresh from storage.
"""

from __future__ import annotations

import asyncio
import json
import tarfile
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

import structlog
from ig_evidence.bundle.kit import verify_kit
from ig_evidence.domain import note
from ig_evidence.domain.cosignature import Cosigner, verified_cosignatures
from ig_evidence.domain.verify_kit import CHECKPOINT_FILE, INDEX_FILE, KitError, parse_index
from prometheus_client import Counter

from ig_portal.clients.evidence import EvidenceCatalog, KitRefused, NotFound, ReleaseView, Unavailable
from ig_portal.domain.identity import Principal

log = structlog.get_logger(__name__)
VERIFICATIONS = Counter("ig_portal_verifications_total", "Release verifications run by the portal", ["outcome"])
SMALL_MEMBER_LIMIT = 1 << 20


class SignatureStatus(StrEnum):
    VERIFIES = "verifies"
    DOES_NOT_VERIFY = "does not verify"
    NOT_CHECKED = "not checked"


@dataclass(frozen=True)
class Witnessed:
    witness: str
    at: datetime


@dataclass(frozen=True)
class LedgerInclusion:
    entry_seq: int  # the registration entry of this bundle
    checkpoint_size: int  # the head checkpoint it is proved in
    anchored_size: int  # the checkpoint the manifest was anchored in at build time (0: not anchored)
    witnessed: tuple[Witnessed, ...]


@dataclass(frozen=True)
class Verification:
    status: SignatureStatus
    signer_name: str
    signer_key_id: str
    problems: tuple[str, ...]
    artifacts_checked: int = 0
    ledger: LedgerInclusion | None = None
    checked_at: datetime | None = None
    reused: bool = False  # served from the cache, not checked for this view
    # The release's images its verified provenance attests beside the artifacts: (name, sha256), by name.
    images: tuple[tuple[str, str], ...] = ()

    @property
    def verified(self) -> bool:
        return self.status is SignatureStatus.VERIFIES


def _small_members(kit: Path) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    with tarfile.open(kit, "r:") as tar:
        for member in tar:
            if member.name in (INDEX_FILE, CHECKPOINT_FILE) and member.isreg() and member.size <= SMALL_MEMBER_LIMIT:
                handle = tar.extractfile(member)
                if handle is not None:
                    found[member.name] = handle.read()
    return found


def check_kit(kit: Path, *, signer_name: str, signer_key_id: str, ledger_key: str | None,
              witnesses: tuple[Cosigner, ...]) -> Verification:
    """``ig-evidence verify <kit> --key-id <pinned>``, then who cosigned the head it was proved against."""
    result = verify_kit(kit, expected_key_id=signer_key_id or None, pinned_ledger_key=ledger_key)
    now = datetime.now(UTC)
    if not result.ok:
        return Verification(SignatureStatus.DOES_NOT_VERIFY, signer_name, signer_key_id, tuple(result.problems),
                            result.artifacts_checked, checked_at=now)
    problems: list[str] = []
    witnessed: tuple[Witnessed, ...] = ()
    anchored = 0
    try:
        small = _small_members(kit)
        anchored = parse_index(json.loads(small[INDEX_FILE])).anchored_size
        if witnesses:
            found = verified_cosignatures(small[CHECKPOINT_FILE].decode(), witnesses)
            witnessed = tuple(Witnessed(c.witness, datetime.fromtimestamp(c.timestamp, UTC))
                              for c in sorted(found, key=lambda c: c.witness))
    except (KeyError, ValueError, KitError, note.NoteError, tarfile.TarError) as error:
        problems.append(f"head checkpoint: {error}")  # a pinned witness's cosignature that does not verify
    ledger = LedgerInclusion(result.registration_seq, result.head_size, anchored, witnessed)
    status = SignatureStatus.DOES_NOT_VERIFY if problems else SignatureStatus.VERIFIES
    return Verification(status, signer_name, signer_key_id, tuple(problems), result.artifacts_checked, ledger, now,
                        images=tuple(sorted(result.shipped.items())))


class ReleaseVerifier:
    def __init__(self, catalog: EvidenceCatalog, *, cache_seconds: float, wait_seconds: float,
                 ledger_key: str | None, witnesses: tuple[Cosigner, ...]) -> None:
        self.catalog = catalog
        self.cache_seconds = cache_seconds
        self.wait_seconds = wait_seconds
        self.ledger_key = ledger_key
        self.witnesses = witnesses
        self._verified: dict[tuple[str, str, str], tuple[Verification, float]] = {}
        self._running: dict[tuple[str, str, str], asyncio.Task[Verification]] = {}

    async def verify(self, user: Principal, release: ReleaseView, signer_name: str,
                     signer_key_id: str) -> Verification:
        key = (user.tenant, release.name, release.manifest_sha256)
        cached = self._verified.get(key)
        if cached is not None and cached[1] > time.monotonic():
            return _reused(cached[0])
        task = self._running.get(key)
        if task is None:
            task = asyncio.create_task(self._run(user, release, signer_name, signer_key_id))
            self._running[key] = task
            task.add_done_callback(lambda done: self._settle(key, done))
        try:
            # Shielded: a page that stops waiting leaves the verification running for the next view.
            return await asyncio.wait_for(asyncio.shield(task), self.wait_seconds)
        except TimeoutError:
            return Verification(SignatureStatus.NOT_CHECKED, signer_name, signer_key_id,
                                ("the verification is still running: reload the page in a moment",))

    def _settle(self, key: tuple[str, str, str], done: asyncio.Task[Verification]) -> None:
        self._running.pop(key, None)
        if done.cancelled() or done.exception() is not None:
            return
        result = done.result()
        VERIFICATIONS.labels(result.status.name.lower()).inc()
        if result.verified and self.cache_seconds > 0:
            self._verified[key] = (result, time.monotonic() + self.cache_seconds)
        else:
            self._verified.pop(key, None)
        now = time.monotonic()
        for stale in [k for k, (_, until) in self._verified.items() if until <= now]:
            del self._verified[stale]

    async def _run(self, user: Principal, release: ReleaseView, signer_name: str,
                   signer_key_id: str) -> Verification:
        with tempfile.TemporaryDirectory(prefix="ig-portal-kit-") as scratch:
            kit = Path(scratch) / "kit.tar"
            out = await asyncio.to_thread(kit.open, "wb")
            try:
                await self.catalog.save_verify_kit(user, release.name, out)
            except KitRefused as error:
                log.warning("verify_kit_refused", release=release.name, tenant=user.tenant, detail=str(error))
                if error.readable:
                    return Verification(SignatureStatus.NOT_CHECKED, signer_name, signer_key_id,
                                        (f"no verify kit: {error}",))
                return Verification(SignatureStatus.DOES_NOT_VERIFY, signer_name, signer_key_id,
                                    (f"the stored bundle could not be read: {error}",), checked_at=datetime.now(UTC))
            except (Unavailable, NotFound, NotImplementedError) as error:
                return Verification(SignatureStatus.NOT_CHECKED, signer_name, signer_key_id,
                                    (f"the evidence service gave no verify kit: {error}",))
            finally:
                out.close()
            verification = await asyncio.to_thread(check_kit, kit, signer_name=signer_name,
                                                   signer_key_id=signer_key_id, ledger_key=self.ledger_key,
                                                   witnesses=self.witnesses)
        if not verification.verified:
            log.warning("release_does_not_verify", release=release.name, tenant=user.tenant,
                        manifest_sha256=release.manifest_sha256, problems=list(verification.problems))
        return verification


def _reused(found: Verification) -> Verification:
    return replace(found, reused=True)
