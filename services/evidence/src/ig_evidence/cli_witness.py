"""``ig-evidence`` commands of the ledger's witnesses: ``checkpoint`` (a witnessed head for ``verify --checkpoint``),
``witness key`` and ``witness serve``, and the witness options of ``verify`` (services/evidence/README.md,
"Witnesses")."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click
from ig_common.tls import IdentityError

from ig_evidence.bundle.ledger_client import LedgerUnavailable, witnessed_head
from ig_evidence.bundle.verify import locate
from ig_evidence.domain.cosignature import Cosigner, parse_cosigner_key, split_note
from ig_evidence.domain.note import NoteError
from ig_evidence.domain.witnessed import WitnessedCheckpoint, WitnessedError, WitnessPolicy, from_document

EXIT_INVALID = 2


def fail(message: str, code: int = EXIT_INVALID) -> None:
    click.echo(f"ig-evidence: {message}", err=True)
    sys.exit(code)


def witness_policy(checkpoint_file: Path | None, witness_keys: tuple[str, ...], minimum: int | None
                    ) -> WitnessPolicy | None:
    if minimum is not None and minimum > len(witness_keys):
        raise ValueError(f"--min-witnesses {minimum}: only {len(witness_keys)} --witness-key given")
    if not witness_keys:
        if checkpoint_file is not None:
            raise ValueError("--checkpoint: give the witnesses' keys (--witness-key) whose cosignatures count")
        return None
    cosigners: list[Cosigner] = []
    for text in witness_keys:
        try:
            cosigners.append(parse_cosigner_key(text))
        except NoteError as error:
            raise ValueError(f"--witness-key {text!r}: {error}") from error
    witnessed = None
    if checkpoint_file is not None:
        try:
            witnessed = from_document(json.loads(checkpoint_file.read_text(encoding="utf-8")))
        except (OSError, ValueError, WitnessedError) as error:
            raise ValueError(f"--checkpoint {checkpoint_file}: {error}") from error
    return WitnessPolicy(tuple(cosigners), 1 if minimum is None else minimum, witnessed)


@click.command()
@click.option("--ledger", "ledger", envvar="IG_EVIDENCE_LEDGER", required=True, help="LedgerService gRPC address")
@click.option("--bundle", "bundles", multiple=True, type=click.Path(path_type=Path, exists=True),
              help="a bundle whose anchored checkpoint needs a consistency proof to the head; repeatable")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path, dir_okay=False))
def checkpoint(ledger: str, bundles: tuple[Path, ...], out: Path) -> None:
    """Write the ledger's head checkpoint with its witnesses' cosignatures and consistency proofs from each
    bundle's anchor (the file `verify --checkpoint` reads)."""
    sizes = []
    for bundle in bundles:
        contents, _ = locate(bundle)
        try:
            manifest = json.loads(contents.metadata.get("manifest.json", b"{}"))
            sizes.append(int(manifest["ledger"]["checkpoint"]["treeSize"]))
        except (ValueError, KeyError, TypeError) as error:
            fail(f"--bundle {bundle}: no ledger anchor in its manifest ({error!r})")
    try:
        witnessed: WitnessedCheckpoint = witnessed_head(ledger, sizes)
    except (LedgerUnavailable, IdentityError) as error:
        fail(str(error))
        return
    out.write_text(json.dumps(witnessed.to_document(), indent=2) + "\n", encoding="utf-8")
    signature_lines = len(split_note(witnessed.checkpoint)[1])
    click.echo(f"wrote {out}: head checkpoint {witnessed.checkpoint.splitlines()[1]} with {signature_lines} "
               f"signature line(s) (the log's and its witnesses'), {len(witnessed.consistency)} consistency proof(s)")


@click.group()
def witness() -> None:
    """A witness of the ledger (c2sp.org/tlog-witness): its key, and the server."""


@witness.command("serve")
def witness_serve() -> None:
    """Run the witness (settings from IG_WITNESS_*; the same as `python -m ig_evidence.witness`)."""
    from ig_evidence.witness.app import main as serve

    serve()


@witness.command("key")
@click.option("--name", required=True, help="the witness's name in its cosignatures, e.g. witness.example/region-a")
@click.option("--out", "path", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="the key file (PEM PKCS#8, written 0600 when missing; read when it exists)")
def witness_key(name: str, path: Path) -> None:
    """Make (or read) a witness's Ed25519 cosigning key and print its verifier key, the value IG_WITNESSES and
    `verify --witness-key` take."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from ig_evidence.store.signing_key import SigningKeyProblem, read_ed25519_key

    if not path.exists():
        pem = Ed25519PrivateKey.generate().private_bytes(serialization.Encoding.PEM,
                                                        serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption())
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
            out.write(pem)
    try:
        key = read_ed25519_key(path, "a witness key")
    except SigningKeyProblem as error:
        fail(str(error))
        return
    click.echo(Cosigner(name, key.public_key()).verifier_key)
