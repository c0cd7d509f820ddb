"""``ig-evidence verify``: a bundle against a pinned key or a keyless identity, or a verify kit, offline; and
``ig-evidence verify-export``: an Audit Portal access-log export against the ledger."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ig_evidence.bundle import build as builder
from ig_evidence.bundle.keyless import IdentityPolicy, KeylessVerifier
from ig_evidence.bundle.kit import KeylessPin, KitVerification, is_kit, verify_kit
from ig_evidence.bundle.verify import Verification, verify_bundle, verify_keyless_bundle
from ig_evidence.cli_witness import fail, witness_policy
from ig_evidence.domain.access_export import verify_export as verify_access_export
from ig_evidence.domain.contract import ContractError
from ig_evidence.domain.provenance import Subject, SubjectError, descriptor, parse_reference
from ig_evidence.domain.trusted_signers import key_id as signer_key_id
from ig_evidence.domain.witnessed import WitnessPolicy
from ig_evidence.keys import KeyProblem, load_public_key

EXIT_VERIFY_FAILED = 1


@click.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--key", "key", envvar="IG_EVIDENCE_PUBLIC_KEY", default=None,
              help="public key (cosign.pub); a bundle needs it or a keyless identity; optional for a kit (which "
                   "carries its pinned signer)")
@click.option("--key-id", default=None, help="a kit only: require its signer to be this key id (the portal shows it)")
@click.option("--certificate-oidc-issuer", "oidc_issuer", default=None,
              help="keyless: the OIDC issuer the signing certificate must name (as cosign's flag)")
@click.option("--certificate-identity-regexp", "identity_regexp", default=None,
              help="keyless: a regexp the certificate's subject must match as a whole")
@click.option("--trusted-root", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None,
              help="keyless: the Sigstore trusted root (JSON) to verify against, offline")
@click.option("--contract", type=click.Path(path_type=Path, exists=True), default=None,
              help="re-check completeness against this contract")
@click.option("--ledger-key", default=None, help="pin the ledger's checkpoint verifier key (name+hash+base64)")
@click.option("--allow-incomplete", is_flag=True)
@click.option("--checkpoint", "checkpoint_file", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              default=None, help="a witnessed head checkpoint (ig-evidence checkpoint writes one): the bundle's "
                                 "anchored checkpoint must be a prefix of it")
@click.option("--witness-key", "witness_keys", multiple=True,
              help="a witness's cosignature verifier key (name+hash+base64(0x04||key)); repeatable")
@click.option("--min-witnesses", type=click.IntRange(min=0), default=None,
              help="valid cosignatures required from the --witness-key witnesses [default: 1 with any key]")
@click.option("--subject", "subjects", multiple=True,
              help="NAME@sha256:HEX (an image reference pinned by digest) the bundle's signed provenance must attest; "
                   "repeatable")
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
def verify(bundle: Path, key: str | None, key_id: str | None, oidc_issuer: str | None, identity_regexp: str | None,
           trusted_root: Path | None, contract: Path | None, ledger_key: str | None, allow_incomplete: bool,
           checkpoint_file: Path | None, witness_keys: tuple[str, ...], min_witnesses: int | None,
           subjects: tuple[str, ...], as_json: bool) -> None:
    """Offline: signature, every artifact's hash, completeness, ledger inclusion, and (with --witness-key) that
    the anchor is in a head checkpoint enough witnesses cosigned. Non-zero on any problem.

    BUNDLE is a bundle (tarball, build directory or unpacked directory) or a verify kit from the audit portal."""
    identity = _identity_policy(oidc_issuer, identity_regexp)
    required = _required_subjects(subjects)
    if is_kit(bundle):
        if checkpoint_file is not None:
            fail("--checkpoint: a verify kit carries its own head checkpoint (with the witnesses' cosignatures)")
        _verify_kit(bundle, key, key_id, ledger_key, as_json, _witnesses(None, witness_keys, min_witnesses),
                    KeylessPin(identity, trusted_root), required)
        return
    witnesses = _witnesses(checkpoint_file, witness_keys, min_witnesses)
    try:
        parsed_contract = builder.load_contract(contract)[0] if contract else None
    except ContractError as error:
        fail(str(error))
        return
    checks = {"contract": parsed_contract, "pinned_ledger_key": ledger_key, "allow_incomplete": allow_incomplete,
              "witnesses": witnesses}
    if key is not None:
        if identity is not None or trusted_root is not None:
            fail("--key: give a key or a keyless identity (--certificate-*, --trusted-root), not both")
        try:
            public_key = load_public_key(key)
        except KeyProblem as error:
            fail(str(error))
            return
        result = verify_bundle(bundle, public_key, **checks)  # type: ignore[arg-type]
        result.require_subjects(required)
        _report_bundle(bundle, result, "", as_json)
        return
    if identity is None or trusted_root is None:
        fail("--key, or --certificate-oidc-issuer with --certificate-identity-regexp and --trusted-root: a bundle is "
             "verified against a signer you pin (only a verify kit carries its pinned signer)")
        return
    try:
        verifier = KeylessVerifier.from_file(trusted_root)
    except ValueError as error:
        fail(f"--trusted-root: {error}")
        return
    result, signer = verify_keyless_bundle(bundle, verifier, identity, **checks)  # type: ignore[arg-type]
    result.require_subjects(required)
    _report_bundle(bundle, result, f", signed keylessly by {signer.subject} ({signer.issuer})" if signer else "",
                   as_json)


def _subjects_json(shipped: dict[str, str]) -> list[dict[str, object]]:
    return [descriptor(name, digest) for name, digest in shipped.items()]


def _echo_shipped(shipped: dict[str, str]) -> None:
    for name, digest in shipped.items():
        click.echo(f"  its provenance also attests {name}@sha256:{digest}")


def _required_subjects(references: tuple[str, ...]) -> list[Subject]:
    try:
        return [parse_reference(reference) for reference in references]
    except SubjectError as error:
        fail(f"--subject: {error}")
        return []


def _identity_policy(issuer: str | None, regexp: str | None) -> IdentityPolicy | None:
    if issuer is None and regexp is None:
        return None
    if issuer is None or regexp is None:
        fail("--certificate-oidc-issuer and --certificate-identity-regexp go together")
        return None
    try:
        return IdentityPolicy(issuer=issuer, subject_regexp=regexp)
    except ValueError as error:
        fail(f"--certificate-identity-regexp: {error}")
        return None


def _witnesses(checkpoint_file: Path | None, witness_keys: tuple[str, ...], minimum: int | None
               ) -> WitnessPolicy | None:
    try:
        return witness_policy(checkpoint_file, witness_keys, minimum)
    except ValueError as error:
        fail(str(error))
        return None


def _report_bundle(bundle: Path, result: Verification, signed_by: str, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"ok": result.ok, "problems": result.problems, "artifacts": result.artifacts_checked,
                               "ledgerSeq": result.ledger_seq, "witnessedSize": result.witnessed_size,
                               "cosignedBy": result.cosigned_by, "shipped": _subjects_json(result.shipped)},
                              indent=2))
    elif result.ok:
        release = result.manifest.get("release") if result.manifest else "?"
        anchor = f", ledger seq {result.ledger_seq} included in its checkpoint" if result.ledger_seq else ""
        if result.witnessed_size is not None:
            anchor += (f", consistent with checkpoint {result.witnessed_size} cosigned by "
                       f"{', '.join(result.cosigned_by)}")
        click.echo(f"verified {bundle}: release {release}{signed_by}, {result.artifacts_checked} artifacts{anchor}")
        _echo_shipped(result.shipped)
    for problem in result.problems:
        click.echo(f"FAIL {problem}", err=True)
    sys.exit(0 if result.ok else EXIT_VERIFY_FAILED)


def _verify_kit(kit: Path, key: str | None, expected: str | None, ledger_key: str | None, as_json: bool,
                witnesses: WitnessPolicy | None, keyless: KeylessPin, required: list[Subject]) -> None:
    if key is not None:
        try:
            pinned = signer_key_id(load_public_key(key))
        except KeyProblem as error:
            fail(str(error))
            return
        if expected is not None and expected != pinned:
            fail(f"--key-id {expected} and --key (key id {pinned}) disagree")
            return
        expected = pinned
    result = verify_kit(kit, expected_key_id=expected, pinned_ledger_key=ledger_key,
                        witnesses=witnesses.cosigners if witnesses else (),
                        min_witnesses=witnesses.minimum if witnesses else 0, keyless=keyless)
    result.require_subjects(required)
    _report_kit(kit, result, as_json)


def _report_kit(kit: Path, result: KitVerification, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"ok": result.ok, "problems": result.problems, "release": result.release,
                               "tenant": result.tenant, "signer": result.signer,
                               "signerPinnedByYou": result.signer_pinned,
                               "artifacts": result.artifacts_checked, "registrationSeq": result.registration_seq,
                               "checkpointSize": result.head_size, "cosignedBy": result.cosigned_by,
                               "shipped": _subjects_json(result.shipped)}, indent=2))
    elif result.ok:
        click.echo(f"verified kit {kit}: release {result.release} of tenant {result.tenant}, signed by "
                   f"{result.signer}, {result.artifacts_checked} artifacts; registered at ledger seq "
                   f"{result.registration_seq}, included in the signed checkpoint of size {result.head_size}"
                   + (f", cosigned by {', '.join(result.cosigned_by)}" if result.cosigned_by else ""))
        _echo_shipped(result.shipped)
        if not result.signer_pinned:
            click.echo("note: the signer was taken from the kit; pin it yourself with --key-id (shown by the "
                       "portal) or --key, or for a keyless signer with --certificate-oidc-issuer, "
                       "--certificate-identity-regexp and --trusted-root", err=True)
    for problem in result.problems:
        click.echo(f"FAIL {problem}", err=True)
    sys.exit(0 if result.ok else EXIT_VERIFY_FAILED)


@click.command("verify-export")
@click.argument("export", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--ledger-key", default=None, help="pin the ledger's checkpoint verifier key (name+hash+base64); "
              "without it the key the export names is used, which proves only that the export is self-consistent")
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
def verify_export(export: Path, ledger_key: str | None, as_json: bool) -> None:
    """Offline: every row of an Audit Portal access-log export (CSV or JSON) is a ledger entry included in the
    export's signed checkpoint, and shows what that entry says. Non-zero on any problem."""
    report = verify_access_export(export.read_bytes(), ledger_key)
    if as_json:
        click.echo(json.dumps({"ok": report.ok, "problems": report.problems, "tenant": report.tenant,
                               "rows": report.rows, "checkpointSize": report.tree_size,
                               "complete": report.complete}, indent=2))
    elif report.ok:
        click.echo(f"verified export {export}: {report.rows} access-log rows of tenant {report.tenant}, each "
                   f"included in the signed checkpoint of size {report.tree_size}"
                   + ("" if report.complete else " (the export is truncated: continue with its cursor)"))
        if ledger_key is None:
            click.echo("note: the ledger key was taken from the export; pass --ledger-key to pin it", err=True)
    for problem in report.problems:
        click.echo(f"FAIL {problem}", err=True)
    sys.exit(0 if report.ok else EXIT_VERIFY_FAILED)
