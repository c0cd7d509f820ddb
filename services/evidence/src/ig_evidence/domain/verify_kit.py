"""The auditor's verify kit: what ties one registered bundle to the ledger's latest checkpoint, checked offline.

A kit is a tar of the registered bundle as uploaded, the signer's pinned public key (for a keyless signer: the
pinned identity policy in the index and the Sigstore trusted root the service checks keyless signatures against),
the ledger's head checkpoint (a signed note, with witness cosignatures when the ledger has them) and ``kit.json``:
the index below plus two proofs against that head. One is the inclusion of the registration entry
(``evidence.bundle_registered``: tenant, manifest and archive SHA-256, so the head proves *this* bundle was
registered for *this* tenant). The other is the consistency of the checkpoint the manifest was anchored in at build
time with the head, so the bundle's own anchor (checked by ``verify_bundle``) is part of the same history the head,
and its witnesses, vouch for.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ig_evidence.domain import merkle, note
from ig_evidence.domain.chain import EntryFields, entry_hash, format_ts, sha256_hex

KIT_VERSION = 1
INDEX_FILE = "kit.json"
CHECKPOINT_FILE = "checkpoint"
SIGNER_KEY_FILE = "signer.pub"
TRUSTED_ROOT_FILE = "trusted_root.json"
REGISTERED_KIND = "evidence.bundle_registered"


class KitError(ValueError):
    """The kit is malformed or one of its proofs does not hold (the message names which)."""


@dataclass(frozen=True)
class ProvedEntry:
    """A ledger entry with its payload and its inclusion proof in the head checkpoint."""

    fields: EntryFields
    entry_hash: str
    payload: bytes
    inclusion: tuple[bytes, ...]


@dataclass(frozen=True)
class SignerIdentity:
    """A keyless signer as the service pins it: cosign's --certificate-oidc-issuer and a regexp the certificate's
    subject must match as a whole."""

    issuer: str
    subject_regexp: str


@dataclass(frozen=True)
class KitIndex:
    release: str
    tenant: str
    manifest_sha256: str
    archive_sha256: str
    bundle_file: str
    signer_name: str
    signer_key_id: str
    ledger_verifier_key: str
    registration: ProvedEntry
    anchored_size: int  # the size of the checkpoint the manifest was anchored in (0: not anchored)
    consistency: tuple[bytes, ...]  # from anchored_size to the head
    signer_identity: SignerIdentity | None = None  # a keyless signer (signer_key_id is then empty)


def _entry_document(entry: ProvedEntry) -> dict[str, Any]:
    f = entry.fields
    return {"seq": f.seq, "ts": format_ts(f.ts), "kind": f.kind, "subject": f.subject,
            "payloadSha256": f.payload_sha256, "prevHash": f.prev_hash, "entryHash": entry.entry_hash,
            "payload": entry.payload.decode(), "inclusion": [h.hex() for h in entry.inclusion]}


def index_document(index: KitIndex) -> dict[str, Any]:
    signer: dict[str, Any] = {"name": index.signer_name, "keyId": index.signer_key_id}
    if index.signer_identity is not None:
        signer["identity"] = {"issuer": index.signer_identity.issuer,
                              "subjectRegexp": index.signer_identity.subject_regexp}
    return {"kitVersion": KIT_VERSION, "release": index.release, "tenant": index.tenant,
            "manifestSha256": index.manifest_sha256, "archiveSha256": index.archive_sha256,
            "bundle": index.bundle_file, "signer": signer,
            "ledger": {"verifierKey": index.ledger_verifier_key, "registration": _entry_document(index.registration),
                       "anchoredSize": index.anchored_size,
                       "consistency": [h.hex() for h in index.consistency]}}


def _hashes(values: Any) -> tuple[bytes, ...]:
    return tuple(bytes.fromhex(str(v)) for v in values)


def parse_index(document: object) -> KitIndex:
    try:
        assert isinstance(document, Mapping), "not a JSON object"
        if document["kitVersion"] != KIT_VERSION:
            raise KitError(f"kitVersion: {document['kitVersion']!r}, this verifier reads {KIT_VERSION}")
        ledger, raw = document["ledger"], document["ledger"]["registration"]
        fields = EntryFields(seq=int(raw["seq"]), ts=datetime.fromisoformat(str(raw["ts"]).replace("Z", "+00:00")),
                             kind=str(raw["kind"]), subject=str(raw["subject"]),
                             payload_sha256=str(raw["payloadSha256"]), prev_hash=str(raw["prevHash"]))
        registration = ProvedEntry(fields, str(raw["entryHash"]), str(raw["payload"]).encode(),
                                   _hashes(raw["inclusion"]))
        identity = document["signer"].get("identity")
        signer_identity = SignerIdentity(str(identity["issuer"]), str(identity["subjectRegexp"])) \
            if identity is not None else None
        bundle_file = str(document["bundle"])
        if "/" in bundle_file or bundle_file.startswith("."):
            raise KitError(f"bundle: {bundle_file!r} is not a plain file name")
        return KitIndex(release=str(document["release"]), tenant=str(document["tenant"]),
                        manifest_sha256=str(document["manifestSha256"]),
                        archive_sha256=str(document["archiveSha256"]), bundle_file=bundle_file,
                        signer_name=str(document["signer"]["name"]), signer_key_id=str(document["signer"]["keyId"]),
                        ledger_verifier_key=str(ledger["verifierKey"]), registration=registration,
                        anchored_size=int(ledger["anchoredSize"]), consistency=_hashes(ledger["consistency"]),
                        signer_identity=signer_identity)
    except KitError:
        raise
    except (AssertionError, KeyError, TypeError, ValueError) as error:
        raise KitError(f"{INDEX_FILE}: malformed ({error!r})") from error


def check_registration(index: KitIndex, head: note.Checkpoint) -> None:
    """The registration entry is what the index says, hashes to its leaf, and is in the head checkpoint."""
    entry = index.registration
    if entry.fields.kind != REGISTERED_KIND:
        raise KitError(f"registration: entry {entry.fields.seq} is a {entry.fields.kind!r} entry")
    if sha256_hex(entry.payload) != entry.fields.payload_sha256:
        raise KitError(f"registration: entry {entry.fields.seq}'s payload does not match its payload hash")
    if entry_hash(entry.fields) != entry.entry_hash:
        raise KitError(f"registration: entry {entry.fields.seq}'s hash does not match its fields")
    try:
        payload = json.loads(entry.payload)
    except ValueError as error:
        raise KitError(f"registration: payload is not JSON ({error})") from error
    claimed = {"release": index.release, "tenant": index.tenant, "manifestSha256": index.manifest_sha256,
               "archiveSha256": index.archive_sha256}
    for name, value in claimed.items():
        if payload.get(name) != value:
            raise KitError(f"registration: the ledger says {name} {payload.get(name)!r}, the kit {value!r}")
    try:
        merkle.verify_inclusion(entry.fields.seq - 1, head.tree_size, merkle.leaf_hash(bytes.fromhex(entry.entry_hash)),
                                entry.inclusion, head.root_hash)
    except merkle.ProofError as error:
        raise KitError(f"registration: entry {entry.fields.seq} is not in the head checkpoint ({error})") from error


def check_anchor_extends_to_head(index: KitIndex, anchored_root: bytes, head: note.Checkpoint) -> None:
    """The checkpoint the manifest was anchored in is a prefix of the head: the same history, not a fork."""
    try:
        merkle.verify_consistency(index.anchored_size, head.tree_size, anchored_root, head.root_hash,
                                  index.consistency)
    except merkle.ProofError as error:
        raise KitError(f"ledger: the manifest's anchor checkpoint (size {index.anchored_size}) is not consistent "
                       f"with the head (size {head.tree_size}): {error}") from error
