"""Evidence stage: every artifact by type into an inputs dir, `ig-evidence build` (SBOM, provenance and schema
diff generated), `ig-evidence verify`, the real `cosign verify-blob`, and registration with the evidence service,
anchored in the ledger."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from ig_release.context import ReleaseContext, StageFailed
from ig_release.process import console_script, run_logged
from ig_release.settings import DEMO_TENANT, REPO

CONTRACT = REPO / "policies" / "evidence" / "release-contract.v1.yaml"
OFFLINE_TRUSTED_ROOT = REPO / "policies" / "evidence" / "cosign-offline-trusted-root.json"


def cosign_binary() -> str:
    from ig_infra.go_tools import tool_path
    from ig_infra.paths import Paths

    return str(tool_path(Paths.from_environment().cache, "cosign"))


def cosign_verify(bundle_dir: os.PathLike[str] | str, public_key: os.PathLike[str] | str,
                  log: os.PathLike[str] | str) -> None:
    """The auditor's check with Sigstore's own tool: key-only, offline (an empty trusted root, no transparency log)."""
    bundle = Path(bundle_dir)
    run_logged([cosign_binary(), "verify-blob", "--key", str(public_key), "--bundle",
                str(bundle / "manifest.sigstore.json"), "--insecure-ignore-tlog=true", "--trusted-root",
                str(OFFLINE_TRUSTED_ROOT), str(bundle / "manifest.json")], Path(log), what="cosign verify-blob")


def source_date_epoch() -> str:
    return os.environ.get("SOURCE_DATE_EPOCH") or subprocess.run(
        ["git", "log", "-1", "--format=%ct"], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()


def release_keys(ctx: ReleaseContext) -> tuple[str, str]:
    """The signing key and the public key it is verified with: the ones the caller configured (the release job:
    ``ctx.shared["signing_key"]``, a file or ``env://VAR``, and ``ctx.shared["verify_key"]``, the pinned
    cosign.pub), else the key the suite's evidence service pins for the release's tenants (IG_RELEASE_SIGNING_KEY,
    from `ig-infra env`). A key made up here would be refused at registration."""
    if ctx.shared.get("signing_key"):
        return ctx.shared["signing_key"], ctx.shared["verify_key"]
    configured = os.environ.get("IG_RELEASE_SIGNING_KEY")
    if not configured:
        raise StageFailed("IG_RELEASE_SIGNING_KEY is not set: run with `eval \"$(ig-infra env)\"` (make up does)")
    key = Path(configured)
    if not key.is_file():
        raise StageFailed(f"IG_RELEASE_SIGNING_KEY: no key at {key}")
    return str(key), str(key.with_suffix(".pub"))


def run(ctx: ReleaseContext) -> str:
    out = ctx.stage_dir("evidence")
    log = ctx.logs / "evidence.log"
    cli = console_script("ig-evidence")
    signing_key, public_key = release_keys(ctx)
    inputs = ctx.write_evidence_inputs(out / "inputs")
    bundle = out / "bundle"
    env = {"SOURCE_DATE_EPOCH": source_date_epoch()}
    previous = ["--previous", ctx.shared["previous_bundle"]] if ctx.shared.get("previous_bundle") else []
    images = ["--subjects", ctx.shared["image_subjects"]] if ctx.shared.get("image_subjects") else []
    run_logged([cli, "build", "--release", ctx.version, "--inputs", str(inputs), "--out", str(bundle), "--key",
                signing_key, "--contract", str(CONTRACT), "--ledger", ctx.endpoints.evidence_grpc,
                "--tenant", DEMO_TENANT, "--repo-root", str(REPO), "--force", *previous, *images], log, env=env,
               what="ig-evidence build")
    run_logged([cli, "verify", str(bundle), "--key", public_key, "--contract", str(CONTRACT)], log,
               what="ig-evidence verify")
    cosign_verify(bundle, public_key, log)
    registered = run_logged([cli, "register", str(bundle), "--release", ctx.version, "--server",
                             ctx.endpoints.evidence_grpc, "--tenant", DEMO_TENANT], log, what="ig-evidence register")
    manifest = json.loads((bundle / "manifest.json").read_text())
    if manifest.get("complete") is not True:
        raise StageFailed(f"the manifest is incomplete: {manifest.get('missing')}", log)
    ctx.summary["evidence bundle"] = str(bundle)
    ctx.summary["release public key (pinned by the evidence service)"] = public_key
    ctx.shared["bundle"] = str(bundle)
    ctx.shared["public_key"] = public_key
    kinds = sorted({a["type"] for a in manifest["artifacts"]})
    if images:
        ctx.summary["images attested by the provenance"] = ctx.shared["image_subjects"]
    return (f"{len(manifest['artifacts'])} artifacts of {len(kinds)} types signed, verified (ig-evidence + cosign), "
            f"registered for tenant {DEMO_TENANT}: {registered.stdout.strip().splitlines()[-1][:120]}")
