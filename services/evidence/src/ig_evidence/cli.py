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
from ig_evidence.bundle.ledger_client import GrpcLedgerAnchor, LedgerUnavailable
from ig_evidence.cli_verify import verify, verify_export
from ig_evidence.cli_witness import checkpoint, witness
from ig_evidence.domain.contract import ContractError
from ig_evidence.domain.manifest import ManifestError
from ig_evidence.domain.provenance import Subject, SubjectError, parse_subjects
from ig_evidence.domain.trusted_signers import TrustedSignersError
from ig_evidence.keys import KeyProblem, generate_key_pair, load_private_key
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
        click.option("--tenant", "tenant", envvar="IG_EVIDENCE_TENANT", default=None,
                     help="tenant the release is built for; required with --ledger (the ledger judges it: granted "
                     "to the release identity, not pinned to another region)"),
        click.option("--allow-incomplete", is_flag=True, help="write a manifest marked incomplete instead of failing"),
        click.option("--source-date-epoch", type=int, default=None, help="overrides $SOURCE_DATE_EPOCH"),
        click.option("--compression", type=click.Choice(["gzip", "none"]), default="gzip", show_default=True),
        click.option("--max-artifact-bytes", type=int, default=builder.DEFAULT_MAX_ARTIFACT_BYTES, show_default=True),
        click.option("--force", is_flag=True, help="replace a non-empty --out"),
        click.option("--subjects", "subjects_file", type=click.Path(path_type=Path, dir_okay=False), default=None,
                     help="JSON list of in-toto subjects the release ships beside the bundle (its images: "
                     "[{\"name\": ..., \"digest\": {\"sha256\": ...}}]), attested by the provenance too; "
                     "`ig-k8s images --subjects` writes one"),
        click.option("--repo-root", type=click.Path(path_type=Path, file_okay=False), default=Path("."),
                     show_default=True, help="repository whose proto/SQL schema is snapshotted"),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _request(release: str, out: Path, key: str, contract: Path, ledger: str | None, tenant: str | None,
             allow_incomplete: bool, source_date_epoch: int | None, compression: str, max_artifact_bytes: int,
             force: bool, repo_root: Path, subjects_file: Path | None) -> builder.BuildRequest:
    if ledger and not tenant:
        raise ValueError("--tenant: required with --ledger (the tenant the release is anchored for)")
    shipped = _shipped_subjects(subjects_file) if subjects_file else []
    return builder.BuildRequest(
        release=release, out=out.absolute(), contract_path=contract, signing_key=load_private_key(key),
        source_date_epoch=_source_date_epoch(source_date_epoch), repo_root=repo_root.absolute(),
        allow_incomplete=allow_incomplete, compression=compression, max_artifact_bytes=max_artifact_bytes,
        anchor=GrpcLedgerAnchor(ledger, tenant or "") if ledger else None, force=force, shipped=tuple(shipped))


def _shipped_subjects(path: Path) -> list[Subject]:
    try:
        document = json.loads(path.read_bytes())
    except OSError as error:
        raise ValueError(f"--subjects {path}: {error.strerror}") from error
    except ValueError as error:
        raise ValueError(f"--subjects {path}: not JSON ({error})") from error
    try:
        return parse_subjects(document)
    except SubjectError as error:
        raise ValueError(f"--subjects {path}: {error}") from error


def _report(result: builder.BuildResult) -> None:
    state = "complete" if not result.missing else "INCOMPLETE"
    click.echo(f"wrote {result.archive} ({state}, {len(result.manifest['artifacts'])} artifacts, "
               f"manifest sha256 {result.manifest_sha256})")
    for item in result.missing:
        click.echo(f"  missing: {item}")
    for shipped in result.shipped:
        click.echo(f"  provenance also attests: {shipped}")
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
main.add_command(verify)
main.add_command(verify_export)
main.add_command(witness)


if __name__ == "__main__":
    main()
