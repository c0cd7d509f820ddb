"""``ig-evidence``: build, verify, amend and keygen for release evidence bundles."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click
import grpc
import structlog
from ig_common.tls import IdentityError

from ig_evidence.bundle import build as builder
from ig_evidence.bundle import upload
from ig_evidence.bundle.amend import amend as amend_bundle
from ig_evidence.bundle.inputs import InputProblem
from ig_evidence.bundle.kit import is_kit, verify_kit
from ig_evidence.bundle.ledger_client import GrpcLedgerAnchor, LedgerUnavailable
from ig_evidence.bundle.verify import verify_bundle
from ig_evidence.cli_witness import checkpoint, witness, witness_policy
from ig_evidence.domain.access_export import verify_export
from ig_evidence.domain.contract import ContractError
from ig_evidence.domain.manifest import ManifestError
from ig_evidence.domain.trusted_signers import TrustedSignersError
from ig_evidence.domain.trusted_signers import key_id as signer_key_id
from ig_evidence.domain.witnessed import WitnessPolicy
from ig_evidence.keys import KeyProblem, generate_key_pair, load_private_key, load_public_key
from ig_evidence.signers_file import trust_key

DEFAULT_CONTRACT = "policies/evidence/release-contract.v1.yaml"
EXIT_INCOMPLETE = 3
EXIT_INVALID = 2
EXIT_VERIFY_FAILED = 1


def _fail(message: str, code: int = EXIT_INVALID) -> None:
    click.echo(f"ig-evidence: {message}", err=True)
    sys.exit(code)


def _source_date_epoch(value: int | None) -> int:
    if value is not None:
        return value
    raw = os.environ.get("SOURCE_DATE_EPOCH")
    if raw is None:
        _fail("SOURCE_DATE_EPOCH is not set (or pass --source-date-epoch); it fixes every timestamp in the bundle")
    assert raw is not None
    if not raw.isdigit():
        _fail(f"SOURCE_DATE_EPOCH {raw!r} is not a non-negative integer")
    return int(raw)


def _common_build_options(function: click.decorators.FC) -> click.decorators.FC:
    options = [
        click.option("--release", required=True, help="release name, e.g. v1.2.1"),
        click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="bundle directory"),
        click.option("--key", "key", envvar="IG_EVIDENCE_KEY", required=True,
                     help="private key: a file, env://VAR, or a secret mount directory with cosign.key"),
        click.option("--contract", "contract", default=DEFAULT_CONTRACT, show_default=True,
                     type=click.Path(path_type=Path)),
        click.option("--ledger", "ledger", envvar="IG_EVIDENCE_LEDGER", default=None,
                     help="LedgerService gRPC address (host:port) to anchor the manifest in"),
        click.option("--allow-incomplete", is_flag=True, help="write a manifest marked incomplete instead of failing"),
        click.option("--source-date-epoch", type=int, default=None, help="overrides $SOURCE_DATE_EPOCH"),
        click.option("--compression", type=click.Choice(["gzip", "none"]), default="gzip", show_default=True),
        click.option("--max-artifact-bytes", type=int, default=builder.DEFAULT_MAX_ARTIFACT_BYTES, show_default=True),
        click.option("--force", is_flag=True, help="replace a non-empty --out"),
        click.option("--repo-root", type=click.Path(path_type=Path, file_okay=False), default=Path("."),
                     show_default=True, help="repository whose proto/SQL schema is snapshotted"),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _request(release: str, out: Path, key: str, contract: Path, ledger: str | None, allow_incomplete: bool,
             source_date_epoch: int | None, compression: str, max_artifact_bytes: int, force: bool,
             repo_root: Path) -> builder.BuildRequest:
    return builder.BuildRequest(
        release=release, out=out.absolute(), contract_path=contract, signing_key=load_private_key(key),
        source_date_epoch=_source_date_epoch(source_date_epoch), repo_root=repo_root.absolute(),
        allow_incomplete=allow_incomplete, compression=compression, max_artifact_bytes=max_artifact_bytes,
        anchor=GrpcLedgerAnchor(ledger) if ledger else None, force=force)


def _report(result: builder.BuildResult) -> None:
    state = "complete" if not result.missing else "INCOMPLETE"
    click.echo(f"wrote {result.archive} ({state}, {len(result.manifest['artifacts'])} artifacts, "
               f"manifest sha256 {result.manifest_sha256})")
    for item in result.missing:
        click.echo(f"  missing: {item}")
    if "provenance" in result.manifest:
        click.echo(f"  ledger: seq {result.manifest['ledger']['entry']['seq']}, {result.manifest['provenance']}")


def _run(action: object) -> builder.BuildResult:
    try:
        return action()  # type: ignore[operator, no-any-return]
    except builder.IncompleteEvidence as error:
        _fail(str(error), EXIT_INCOMPLETE)
    except (InputProblem, ContractError, ManifestError, KeyProblem, LedgerUnavailable, IdentityError, ValueError,
            OSError) as error:
        _fail(str(error))
    raise AssertionError("unreachable")


@click.group()
def main() -> None:
    """Signed, deterministic release evidence bundles anchored in the provenance ledger."""
    # stdout is for results; log lines go to stderr.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))


@main.command()
@_common_build_options
@click.option("--inputs", required=True, type=click.Path(path_type=Path), help="collected evidence: <type>/<files>")
@click.option("--previous", type=click.Path(path_type=Path), default=None,
              help="previous release's bundle, for the schema diff")
def build(inputs: Path, previous: Path | None, **options: object) -> None:
    """Collect, generate, check against the contract, sign and archive a release's evidence."""
    def run() -> builder.BuildResult:
        request = _request(**options)  # type: ignore[arg-type]
        request.inputs, request.previous = inputs, previous
        return builder.build(request)

    _report(_run(run))


@main.command()
@_common_build_options
@click.option("--bundle", "previous_bundle", required=True, type=click.Path(path_type=Path, exists=True),
              help="the bundle being amended")
@click.option("--inputs", required=True, type=click.Path(path_type=Path), help="delta evidence: <type>/<files>")
def amend(previous_bundle: Path, inputs: Path, **options: object) -> None:
    """Add delta evidence to a release's bundle, re-sign, and link the superseded manifest in the ledger."""
    _report(_run(lambda: amend_bundle(previous_bundle, inputs, _request(**options))))  # type: ignore[arg-type]


@main.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--key", "key", envvar="IG_EVIDENCE_PUBLIC_KEY", default=None,
              help="public key (cosign.pub); required for a bundle, optional for a kit (which carries its pinned key)")
@click.option("--key-id", default=None, help="a kit only: require its signer to be this key id (the portal shows it)")
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
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
def verify(bundle: Path, key: str | None, key_id: str | None, contract: Path | None, ledger_key: str | None,
           allow_incomplete: bool, checkpoint_file: Path | None, witness_keys: tuple[str, ...],
           min_witnesses: int | None, as_json: bool) -> None:
    """Offline: signature, every artifact's hash, completeness, ledger inclusion, and (with --witness-key) that
    the anchor is in a head checkpoint enough witnesses cosigned. Non-zero on any problem.

    BUNDLE is a bundle (tarball, build directory or unpacked directory) or a verify kit from the audit portal."""
    if is_kit(bundle):
        if checkpoint_file is not None:
            _fail("--checkpoint: a verify kit carries its own head checkpoint (with the witnesses' cosignatures)")
            return
        try:
            kit_witnesses = witness_policy(None, witness_keys, min_witnesses)
        except ValueError as error:
            _fail(str(error))
            return
        _verify_kit(bundle, key, key_id, ledger_key, as_json, kit_witnesses)
        return
    if key is None:
        _fail("--key: required to verify a bundle (only a verify kit carries its pinned key)")
        return
    try:
        public_key = load_public_key(key)
        parsed_contract = builder.load_contract(contract)[0] if contract else None
        witnesses = witness_policy(checkpoint_file, witness_keys, min_witnesses)
    except (KeyProblem, ContractError, ValueError) as error:
        _fail(str(error))
        return
    result = verify_bundle(bundle, public_key, contract=parsed_contract, pinned_ledger_key=ledger_key,
                           allow_incomplete=allow_incomplete, witnesses=witnesses)
    if as_json:
        click.echo(json.dumps({"ok": result.ok, "problems": result.problems, "artifacts": result.artifacts_checked,
                               "ledgerSeq": result.ledger_seq, "witnessedSize": result.witnessed_size,
                               "cosignedBy": result.cosigned_by}, indent=2))
    elif result.ok:
        release = result.manifest.get("release") if result.manifest else "?"
        anchor = f", ledger seq {result.ledger_seq} included in its checkpoint" if result.ledger_seq else ""
        if result.witnessed_size is not None:
            anchor += (f", consistent with checkpoint {result.witnessed_size} cosigned by "
                       f"{', '.join(result.cosigned_by)}")
        click.echo(f"verified {bundle}: release {release}, {result.artifacts_checked} artifacts{anchor}")
    for problem in result.problems:
        click.echo(f"FAIL {problem}", err=True)
    sys.exit(0 if result.ok else EXIT_VERIFY_FAILED)


def _verify_kit(kit: Path, key: str | None, expected: str | None, ledger_key: str | None, as_json: bool,
                witnesses: WitnessPolicy | None = None) -> None:
    if key is not None:
        try:
            pinned = signer_key_id(load_public_key(key))
        except KeyProblem as error:
            _fail(str(error))
            return
        if expected is not None and expected != pinned:
            _fail(f"--key-id {expected} and --key (key id {pinned}) disagree")
            return
        expected = pinned
    result = verify_kit(kit, expected_key_id=expected, pinned_ledger_key=ledger_key,
                        witnesses=witnesses.cosigners if witnesses else (),
                        min_witnesses=witnesses.minimum if witnesses else 0)
    if as_json:
        click.echo(json.dumps({"ok": result.ok, "problems": result.problems, "release": result.release,
                               "tenant": result.tenant, "signer": result.signer,
                               "artifacts": result.artifacts_checked, "registrationSeq": result.registration_seq,
                               "checkpointSize": result.head_size, "cosignedBy": result.cosigned_by}, indent=2))
    elif result.ok:
        click.echo(f"verified kit {kit}: release {result.release} of tenant {result.tenant}, signed by "
                   f"{result.signer}, {result.artifacts_checked} artifacts; registered at ledger seq "
                   f"{result.registration_seq}, included in the signed checkpoint of size {result.head_size}"
                   + (f", cosigned by {', '.join(result.cosigned_by)}" if result.cosigned_by else ""))
        if expected is None:
            click.echo("note: the signer key was taken from the kit; pass --key-id (shown by the portal) or --key to "
                       "pin it", err=True)
    for problem in result.problems:
        click.echo(f"FAIL {problem}", err=True)
    sys.exit(0 if result.ok else EXIT_VERIFY_FAILED)


@main.command("verify-export")
@click.argument("export", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--ledger-key", default=None, help="pin the ledger's checkpoint verifier key (name+hash+base64); "
              "without it the key the export names is used, which proves only that the export is self-consistent")
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
def verify_export_command(export: Path, ledger_key: str | None, as_json: bool) -> None:
    """Offline: every row of an Audit Portal access-log export (CSV or JSON) is a ledger entry included in the
    export's signed checkpoint, and shows what that entry says. Non-zero on any problem."""
    report = verify_export(export.read_bytes(), ledger_key)
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


@main.command()
@click.argument("bundle", type=click.Path(path_type=Path, exists=True))
@click.option("--release", required=True)
@click.option("--server", envvar="IG_EVIDENCE_SERVER", required=True, help="EvidenceService gRPC address")
@click.option("--tenant", required=True, help="tenant the release belongs to (one the release identity is granted)")
def register(bundle: Path, release: str, server: str, tenant: str) -> None:
    """Upload a bundle to the evidence service (idempotent: the same bundle twice is registered once)."""
    try:
        response = upload.register(server, bundle, release, tenant)
    except grpc.RpcError as error:
        _fail(f"register at {server}: {error.code().name}: {error.details()}")
        return
    except (IdentityError, ValueError) as error:
        _fail(str(error))
        return
    state = "already registered" if response.already_registered else "registered"
    click.echo(f"{state}: release {response.release}, manifest sha256 {response.manifest_sha256}, "
               f"ledger seq {response.ledger_seq}")


@main.command()
@click.argument("public_key", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--signers", "signers_file", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="the trusted-signers file the evidence service reads (IG_TRUSTED_SIGNERS_PATH); created if missing")
@click.option("--tenant", "tenants", required=True, multiple=True, help="a tenant that trusts the key (repeatable)")
@click.option("--name", required=True, help="the signer's name, as the service and the portal will show it")
def trust(public_key: Path, signers_file: Path, tenants: tuple[str, ...], name: str) -> None:
    """Pin a release signing key (cosign.pub) for tenants in the evidence service's trusted-signers file."""
    try:
        pinned = trust_key(signers_file, name, public_key.read_bytes(), tenants)
    except (TrustedSignersError, ValueError) as error:
        _fail(f"{public_key}: {error}")
        return
    click.echo(f"pinned {name} (key id {pinned}) for {', '.join(tenants)} in {signers_file}")


@main.command()
@click.option("--out", "directory", type=click.Path(path_type=Path, file_okay=False), default=Path("."),
              show_default=True)
@click.option("--force", is_flag=True)
def keygen(directory: Path, force: bool) -> None:
    """Write cosign.key (PKCS#8 PEM; encrypted with $COSIGN_PASSWORD / $IG_EVIDENCE_KEY_PASSWORD if set) and
    cosign.pub (what `cosign verify-blob --key` takes)."""
    try:
        private_path, public_path = generate_key_pair(directory, None, force=force)
    except KeyProblem as error:
        _fail(str(error))
        return
    click.echo(f"wrote {private_path} and {public_path}")


main.add_command(checkpoint)
main.add_command(witness)


if __name__ == "__main__":
    main()
