"""``ig-evidence amend`` (runbook "Evidence Missing"): previous bundle + delta evidence -> re-signed bundle.

The previous bundle's artifacts are carried over unchanged (after checking them against its manifest), the delta
is added, a new provenance attestation covers the union (and the images the previous one attested, with any
given now), and the new ledger entry's manifest names the superseded
manifest (its sha256 and ledger entry), so the history of the release stays in the chain.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from ig_evidence.bundle import build as builder
from ig_evidence.bundle.verify import locate
from ig_evidence.domain import manifest as mf
from ig_evidence.domain.provenance import Subject, merge_subjects, statement_subjects, subject

AMEND_KIND = "evidence.amend"


def _extract_previous(bundle: Path, into: Path) -> tuple[dict[str, object], str, list[Subject]]:
    import json
    import tarfile

    contents, problems = locate(bundle)
    manifest_bytes = contents.metadata.get(mf.MANIFEST_FILE)
    if problems or contents.problems or manifest_bytes is None:
        raise ValueError(f"previous bundle {bundle} is damaged: {'; '.join(problems + contents.problems)}")
    manifest = json.loads(manifest_bytes)
    records = mf.artifacts_of(manifest)
    for record in records:
        if contents.digests.get(record.path) != (record.sha256, record.size):
            raise ValueError(f"previous bundle {bundle}: artifact {record.name} does not match its manifest")
    archive = bundle if bundle.is_file() else next(iter(sorted(bundle.glob("evidence-*.tar*"))), None)
    carried = {r.path for r in records if r.type != "provenance"}
    if archive is None:
        for path in carried:
            target = into / path.removeprefix(f"{mf.ARTIFACTS_DIR}/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(bundle / path, target)
    else:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                if member.name in carried:
                    target = into / member.name.removeprefix(f"{mf.ARTIFACTS_DIR}/")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    handle = tar.extractfile(member)
                    assert handle is not None
                    with open(target, "wb") as out:
                        shutil.copyfileobj(handle, out, 1 << 20)
    return manifest, hashlib.sha256(manifest_bytes).hexdigest(), _shipped(contents.metadata, records)


def _shipped(metadata: dict[str, bytes], records: list[mf.ArtifactRecord]) -> list[Subject]:
    """The subjects the previous provenance attests beyond the bundle's artifacts (its images). Read, like the
    artifacts carried over, without checking the old signature: the amendment is signed anew by whoever amends."""
    import base64
    import json

    provenance = next((r for r in records if r.type == "provenance"), None)
    if provenance is None or provenance.path not in metadata:
        return []
    try:
        statement = json.loads(base64.b64decode(json.loads(metadata[provenance.path])["payload"]))
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"previous bundle: its provenance attestation is unreadable ({error})") from error
    artifacts = {r.name for r in records}
    return [subject(name, digest, "previous provenance subject")
            for name, digest in statement_subjects(statement).items() if name not in artifacts]


def _merge_delta(delta: Path, into: Path) -> None:
    for source in sorted(delta.rglob("*")):
        if source.is_file():
            target = into / source.relative_to(delta)
            if target.exists():
                raise ValueError(f"{source}: duplicate artifact name {source.name!r} (already in the bundle)")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)


def amend(previous: Path, delta: Path, request: builder.BuildRequest) -> builder.BuildResult:
    with tempfile.TemporaryDirectory(prefix="ig-evidence-amend-") as scratch:
        merged = Path(scratch) / "inputs"
        merged.mkdir()
        old_manifest, old_sha256, shipped = _extract_previous(previous, merged)
        if old_manifest.get("release") != request.release:
            raise ValueError(f"previous bundle is for release {old_manifest.get('release')!r}, "
                             f"not {request.release!r}")
        # Planning the delta first reports its own bad input (unknown type, symlink escape ...) against its paths.
        contract, _ = builder.load_contract(request.contract_path)
        builder.plan_inputs(delta, contract, max_artifact_bytes=request.max_artifact_bytes)
        _merge_delta(delta, merged)
        supersedes = {"manifestSha256": old_sha256, "provenance": old_manifest.get("provenance"),
                      "createdAt": old_manifest.get("createdAt")}
        return builder.build(replace(request, inputs=merged, generate=frozenset({"provenance"}),
                                     supersedes=supersedes, ledger_kind=AMEND_KIND,
                                     shipped=tuple(merge_subjects(shipped, request.shipped))))
