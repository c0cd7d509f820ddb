"""`ig-release job`: the release job .github/workflows/release.yml runs, and that runs the same way locally.

One command, in stages (the release flow's own runner: each shown, the first failure stops the job naming the stage
and its log, exit 1):

1. ``collect``   evidence other jobs produced (``--collected DIR``: ``<type>/`` or ``evidence-<type>/`` folders, as
                 actions/download-artifact lays them out), e.g. the JUnit report of ``make test``;
2. the release flow's producing stages (``policy``, ``burn``, ``migration``, ``region``: real traffic, burn, the
   blue/green migration and the region drill, each writing its reports by evidence type), unless ``--no-produce``;
3. ``previous``  the newest earlier release's bundle from the publish target, for the schema diff;
4. ``evidence``  ``ig-evidence build`` (signed, anchored in the ledger), ``ig-evidence verify``, the real
                 ``cosign verify-blob``, registration with the evidence service;
5. ``keyless``   (``--keyless-identity``, CI only) ``cosign sign-blob`` with the job's ambient OIDC identity, and
                 ``cosign verify-blob`` of it against that identity;
6. ``portal``    the auditor downloads the release from the portal and verifies it offline;
7. ``publish``   the assets go to ``--publish`` (``dir:PATH`` or ``github``), are fetched back from there and
                 verified again (ig-evidence + cosign) — what was published is what verifies.

``--start-suite`` starts policy, evidence and portal as processes on free ports against the infrastructure the IG_*
variables name (``make infra-up`` + ``ig-infra env``, or a test's); without it the running suite is used (``make
up``'s, or the IG_* addresses).
"""

from __future__ import annotations

import argparse
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from ig_release.context import ReleaseContext, StageFailed
from ig_release.flow import STAGES, Stage, run_flow
from ig_release.process import console_script, run_logged
from ig_release.publish import Publisher, publisher_for, release_assets
from ig_release.settings import DEMO_TENANT, PROFILES, Endpoints
from ig_release.stages.evidence import CONTRACT, cosign_binary

PRODUCING_STAGES = ("policy", "burn", "migration", "region")
GITHUB_OIDC_ISSUER = "https://token.actions.githubusercontent.com"
KEYLESS_BUNDLE = "manifest.keyless.sigstore.json"
# What the services started by --start-suite need from the infrastructure (ig_release.suite.local_suite).
SUITE_BASE = ("IG_DATABASE_URL", "IG_KAFKA_BOOTSTRAP", "IG_OPA_URL", "IG_OPA_TOKEN_FILE", "IG_OIDC_ISSUER",
              "IG_IDENTITIES", "IG_AUTHZ_TABLE", "IG_DECISION_LOG_PEPPER_FILE", "IG_DECISION_LOG_INPUT_KEY_FILE")


def add_arguments(job: argparse.ArgumentParser) -> None:
    job.add_argument("--version", required=True, help="release, e.g. v1.2.1")
    job.add_argument("--profile", choices=sorted(PROFILES), default="ci")
    job.add_argument("--artifacts", type=Path, default=Path("artifacts/release-job"),
                     help="work folder: logs, stage outputs, the built bundle (default artifacts/release-job)")
    job.add_argument("--publish", required=True, metavar="dir:PATH|github",
                     help="where the signed evidence goes: a local folder, or the tag's GitHub release (gh)")
    job.add_argument("--collected", type=Path, default=None,
                     help="evidence produced by other jobs: <type>/ or evidence-<type>/ folders of files")
    job.add_argument("--no-produce", action="store_true",
                     help="do not run the producing stages; every required input must be --collected")
    job.add_argument("--key", default=None,
                     help="signing key (file or env://VAR); default: a local pair generated once under --artifacts")
    job.add_argument("--public-key", type=Path, default=None,
                     help="the pinned cosign.pub every verification uses (required with --key)")
    job.add_argument("--keyless-identity", default=None,
                     help="also sign keyless with the ambient OIDC identity and verify against this identity (CI)")
    job.add_argument("--keyless-issuer", default=GITHUB_OIDC_ISSUER)
    job.add_argument("--image-subjects", type=Path, default=None, metavar="FILE",
                     help="the release's images (name, digest: `ig-k8s images --subjects`), attested in its provenance")
    job.add_argument("--start-suite", action="store_true",
                     help="start policy, evidence and portal on free ports (needs the infrastructure's IG_* vars)")


@dataclass(frozen=True)
class JobOptions:
    version: str
    publisher: Publisher
    collected: Path | None
    produce: bool
    key: str | None
    public_key: Path | None
    keyless_identity: str | None
    keyless_issuer: str

    @classmethod
    def from_arguments(cls, args: argparse.Namespace) -> JobOptions:
        """Raises ValueError naming the option that is wrong."""
        if (args.key is None) != (args.public_key is None):
            raise ValueError("--key and --public-key go together (sign with one, verify with the pinned other)")
        if args.public_key is not None and not args.public_key.is_file():
            raise ValueError(f"--public-key {args.public_key}: no such file")
        if args.collected is not None and not args.collected.is_dir():
            raise ValueError(f"--collected {args.collected}: no such folder")
        if args.no_produce and args.collected is None:
            raise ValueError("--no-produce needs --collected (the inputs have to come from somewhere)")
        collected = args.collected.resolve() if args.collected else None
        return cls(args.version, publisher_for(args.publish), collected, not args.no_produce, args.key,
                   args.public_key.resolve() if args.public_key else None, args.keyless_identity,
                   args.keyless_issuer)


def collect(ctx: ReleaseContext, collected: Path) -> str:
    """Every file under <collected>/<type>/ (or evidence-<type>/, a workflow artifact's folder) as that type."""
    strays = sorted(p.name for p in collected.iterdir() if not p.is_dir())
    if strays:
        raise StageFailed(f"--collected {collected}: files belong in a <type>/ folder, not at the top: {strays}")
    counted, kinds = 0, set[str]()
    for folder in sorted(p for p in collected.iterdir() if p.is_dir()):
        kind = folder.name.removeprefix("evidence-")
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            ctx.add_evidence(kind, path)
            kinds.add(kind)
            counted += 1
    if not counted:
        raise StageFailed(f"--collected {collected} holds no <type>/<file>")
    return f"{counted} files of {len(kinds)} types from {collected}: {', '.join(sorted(kinds))}"


def previous(ctx: ReleaseContext, options: JobOptions) -> str:
    found = options.publisher.previous_bundle(options.version, ctx.stage_dir("previous"), ctx.logs / "publish.log")
    if found is None:
        return f"no earlier release in {options.publisher.describe()}: the schema diff has no baseline"
    ctx.shared["previous_bundle"] = str(found)
    return f"schema diff against {found}"


def keyless(ctx: ReleaseContext, options: JobOptions) -> str:
    bundle = Path(ctx.shared["bundle"])
    log = ctx.logs / "keyless.log"
    run_logged([cosign_binary(), "sign-blob", "--yes", "--bundle", str(bundle / KEYLESS_BUNDLE),
                str(bundle / "manifest.json")], log, what="cosign sign-blob (keyless)")
    keyless_verify(bundle, options, log)
    return f"signed keyless as {options.keyless_identity}, verified by cosign"


def keyless_verify(bundle: Path, options: JobOptions, log: Path) -> None:
    run_logged([cosign_binary(), "verify-blob", "--bundle", str(bundle / KEYLESS_BUNDLE), "--certificate-identity",
                str(options.keyless_identity), "--certificate-oidc-issuer", options.keyless_issuer,
                str(bundle / "manifest.json")], log, what="cosign verify-blob (keyless)")


def publish(ctx: ReleaseContext, options: JobOptions) -> str:
    """Publish, then fetch the published copy back and verify that (the pinned key; cosign too)."""
    from ig_release.auditor import verify_offline

    log = ctx.logs / "publish.log"
    public_key = Path(ctx.shared["public_key"])
    staged = ctx.stage_dir("publish") / "cosign.pub"  # published under the name auditors and cosign docs expect
    shutil.copyfile(public_key, staged)
    where = options.publisher.publish(options.version, release_assets(Path(ctx.shared["bundle"]), options.version,
                                                                      staged), log)
    fetched = options.publisher.fetch(options.version, ctx.stage_dir("publish") / "fetched", log)
    verified = verify_offline(fetched, public_key, log)
    if options.keyless_identity:
        keyless_verify(fetched, options, log)
    ctx.summary["published"] = where
    return f"published to {where}; the published copy: {verified}; cosign: Verified OK"


def job_stages(options: JobOptions) -> list[Stage]:
    flow = {stage.name: stage for stage in STAGES}

    def stage(name: str, title: str, action: Callable[[ReleaseContext], str]) -> Stage:
        return Stage(name, title, lambda ctx, _: action(ctx))

    stages: list[Stage] = []
    if options.collected is not None:
        collected = options.collected
        stages.append(stage("collect", "evidence produced by other jobs", lambda c: collect(c, collected)))
    if options.produce:
        stages.extend(flow[name] for name in PRODUCING_STAGES)
    stages.append(stage("previous", "the previous release's bundle (schema diff)", lambda c: previous(c, options)))
    stages.append(flow["evidence"])
    if options.keyless_identity:
        stages.append(stage("keyless", "keyless Sigstore signature (ambient OIDC)", lambda c: keyless(c, options)))
    stages.append(flow["portal"])
    stages.append(stage("publish", f"publish to {options.publisher.describe()} and verify the published copy",
                        lambda c: publish(c, options)))
    return stages


def pin_release_key(public_key: Path, work: Path) -> Path:
    """A trusted-signers file pinning the job's public key for the release's tenant, for the evidence service
    --start-suite starts (it accepts bundles of pinned signers only)."""
    signers = work / "trusted-signers.yaml"
    signers.unlink(missing_ok=True)
    run_logged([console_script("ig-evidence"), "trust", str(public_key), "--signers", str(signers), "--tenant",
                DEMO_TENANT, "--name", "release job key"], work / "trust.log", what="ig-evidence trust")
    return signers


@contextmanager
def suite_if_asked(start: bool, work: Path, public_key: Path | None, *, producing: bool = True) -> Iterator[None]:
    """Start policy, evidence and portal when asked, and the burn and migration services when the producing stages
    run (``producing``); their addresses go into this process's IG_* variables, which every stage and the tools it runs
    read. The evidence service trusts the job's --public-key when given, else the signers `ig-infra env` names
    (IG_TRUSTED_SIGNERS_PATH: the suite's release key)."""
    if not start:
        yield
        return
    wanted = SUITE_BASE if public_key is not None else (*SUITE_BASE, "IG_TRUSTED_SIGNERS_PATH")
    missing = [name for name in wanted if not os.environ.get(name)]
    if missing:
        raise ValueError(f"--start-suite needs {', '.join(missing)} (make infra-up; eval \"$(uv run ig-infra env)\")")
    from ig_release.suite import local_suite

    work.mkdir(parents=True, exist_ok=True)
    base = {name: os.environ[name] for name in wanted}
    if public_key is not None:
        base["IG_TRUSTED_SIGNERS_PATH"] = str(pin_release_key(public_key, work))
    with local_suite(base, work, producing=producing) as env:
        saved = dict(os.environ)
        os.environ.update(env)
        try:
            yield
        finally:
            os.environ.clear()
            os.environ.update(saved)


def run_job(args: argparse.Namespace, console: Console) -> int:
    try:
        options = JobOptions.from_arguments(args)
    except ValueError as error:
        console.print(f"ig-release job: {error}")
        return 2
    artifacts = args.artifacts.resolve() / options.version
    artifacts.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        try:
            stack.enter_context(suite_if_asked(args.start_suite, artifacts / "suite", options.public_key,
                                               producing=options.produce))
        except ValueError as error:
            console.print(f"ig-release job: {error}")
            return 2
        except RuntimeError as error:  # a service that did not become healthy: its log tail is in the message
            console.print(f"ig-release job: the suite did not start: {error}")
            return 1
        ctx = ReleaseContext(options.version, PROFILES[args.profile], artifacts, Endpoints.from_environment())
        try:
            ctx.attest_images(args.image_subjects)
        except ValueError as error:
            console.print(f"ig-release job: {error}")
            return 2
        if options.key is not None and options.public_key is not None:
            ctx.shared["signing_key"], ctx.shared["verify_key"] = options.key, str(options.public_key)
        ctx.summary["evidence contract"] = str(CONTRACT)
        return run_flow(ctx, job_stages(options), console)
