"""What an external auditor does, with no backend access: sign in, download every artifact of the release and the
signed manifest from the portal, strip the watermarks (ig-portal-unwrap), lay the files out as the bundle, and
verify offline with `ig-evidence verify` and the real `cosign verify-blob`."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

import httpx

from ig_release.context import StageFailed
from ig_release.process import console_script, run_logged
from ig_release.stages.evidence import cosign_verify
from ig_release.stages.portal import auditor_token

MANIFEST_FILES = ("manifest.json", "manifest.json.sig", "manifest.sigstore.json")


def download_release(portal: str, issuer: str, release: str, downloads: Path) -> tuple[int, bool]:
    """Every artifact (through its time-boxed signed link) and the manifest files, watermarked as served.

    Returns the artifact count and whether the portal offered the signed manifest (it relays the evidence service's
    GetManifest; an evidence service without it answers 404 "not offered")."""
    portal = portal.rstrip("/")
    shutil.rmtree(downloads, ignore_errors=True)
    downloads.mkdir(parents=True)
    with httpx.Client(headers={"Authorization": f"Bearer {auditor_token(issuer)}"}, timeout=60) as client:
        listing = polite_get(client, f"{portal}/audit/artifacts", release=release)
        if listing.status_code != 200:
            raise StageFailed(f"GET /audit/artifacts?release={release} answered {listing.status_code}")
        artifacts = listing.json()["artifacts"]
        for artifact in artifacts:
            link = polite_get(client, f"{portal}/audit/download/{artifact['id']}").json()["url"]
            save(polite_get(client, link if link.startswith("http") else f"{portal}{link}"), downloads)
        offered = True
        for name in MANIFEST_FILES:
            reply = polite_get(client, f"{portal}/audit/manifest/{release}/{name}")
            if reply.status_code == 404 and "not offered" in reply.text:
                offered = False
                break
            save(reply, downloads)
    return len(artifacts), offered


def polite_get(client: httpx.Client, url: str, **params: str) -> httpx.Response:
    """GET that waits out the portal's rate limit (429 + Retry-After), as a well-behaved client does."""
    for _ in range(30):
        reply = client.get(url, params=params or None)
        if reply.status_code != 429:
            return reply
        time.sleep(float(reply.headers.get("Retry-After", "5")))
    return reply


def save(reply: httpx.Response, folder: Path) -> None:
    if reply.status_code != 200:
        raise StageFailed(f"download {reply.request.url} answered {reply.status_code}: {reply.text[:200]}")
    found = re.search(r'filename="([^"]+)"', reply.headers.get("content-disposition", ""))
    if not found:
        raise StageFailed(f"download {reply.request.url} names no file")
    (folder / Path(found.group(1)).name).write_bytes(reply.content)


def rebuild_bundle(downloads: Path, work: Path, log: Path, manifest_source: Path | None = None) -> Path:
    """Unwrap the watermarks and put each original where the manifest says it belongs (the manifest files come
    from the downloads, or from ``manifest_source`` when the portal could not serve them)."""
    originals, bundle = work / "originals", work / "bundle"
    for folder in (originals, bundle):
        shutil.rmtree(folder, ignore_errors=True)
    run_logged([console_script("ig-portal-unwrap"), "--out", str(originals), *map(str, sorted(downloads.iterdir()))],
               log, what="ig-portal-unwrap")
    bundle.mkdir(parents=True)
    for name in MANIFEST_FILES:
        shutil.copyfile((manifest_source or originals) / name, bundle / name)
    for artifact in json.loads((bundle / "manifest.json").read_text())["artifacts"]:
        target = bundle / artifact["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(originals / artifact["name"], target)
    return bundle


def verify_offline(bundle: Path, public_key: Path, log: Path) -> str:
    done = run_logged([console_script("ig-evidence"), "verify", str(bundle), "--key", str(public_key)], log,
                      what="ig-evidence verify (auditor, offline)")
    cosign_verify(bundle, public_key, log)
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "verified"


def retrieve_and_verify(portal: str, issuer: str, release: str, public_key: Path, work: Path, log: Path,
                        published_manifest: Path | None = None) -> str:
    """Download, unwrap, verify. ``published_manifest``: the release's bundle folder, whose signed manifest is used
    only if the portal does not offer it (and the outcome says so)."""
    count, offered = download_release(portal, issuer, release, work / "downloads")
    if not offered and published_manifest is None:
        raise StageFailed("the portal does not offer the signed manifest (evidence service lacks GetManifest)")
    bundle = rebuild_bundle(work / "downloads", work, log, None if offered else published_manifest)
    result = verify_offline(bundle, public_key, log)
    source = "the portal" if offered else "the published bundle (the portal's evidence service offers no GetManifest)"
    return (f"downloaded {count} artifacts from the portal, signed manifest from {source}; offline: {result}; "
            f"cosign: Verified OK")


def verify_kit_offline(portal: str, issuer: str, release: str, public_key: Path, work: Path, log: Path) -> str:
    """The auditor's one-download path: the release's verify kit from the portal, checked offline in one command
    against the release key the auditor was given (``--key`` pins the kit's signer)."""
    work.mkdir(parents=True, exist_ok=True)
    with httpx.Client(headers={"Authorization": f"Bearer {auditor_token(issuer)}"}, timeout=120) as client:
        reply = polite_get(client, f"{portal.rstrip('/')}/audit/kit/{release}")
    if reply.status_code != 200:
        raise StageFailed(f"GET /audit/kit/{release} answered {reply.status_code}: {reply.text[:200]}")
    kit = work / f"evidence-kit-{release}.tar"
    kit.write_bytes(reply.content)
    # With `make up`'s witnesses running (ig-infra env names their keys), every one of them must have cosigned.
    witnesses = [k for k in os.environ.get("IG_WITNESS_VERIFIER_KEYS", "").split(",") if k]
    required = [arg for key in witnesses for arg in ("--witness-key", key)]
    if witnesses:
        required += ["--min-witnesses", str(len(witnesses))]
    done = run_logged([console_script("ig-evidence"), "verify", str(kit), "--key", str(public_key), *required], log,
                      what="ig-evidence verify (verify kit, offline)")
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "verified"


if __name__ == "__main__":  # pragma: no cover - manual use: python -m ig_release.auditor PORTAL ISSUER RELEASE KEY DIR
    print(retrieve_and_verify(sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4]), Path(sys.argv[5]),
                              Path(sys.argv[5]) / "auditor.log", Path(sys.argv[6]) if len(sys.argv) > 6 else None))
