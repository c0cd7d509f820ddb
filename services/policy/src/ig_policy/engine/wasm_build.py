"""Building the in-process module: ``opa build -t wasm`` of a policy directory, stamped with the revision the OPA
sidecar reports when it loads that same directory.

``opa build`` reformats the modules it puts in a bundle (comments go), so the revision cannot be recomputed from the
bundle's copies; it is computed here from the directory's own files (as ``opa run`` loads and reports them) and the
bundle's data document, and written into the bundle's manifest (``--revision``). The service's in-process engine
answers only while the sidecar reports that revision.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from ig_policy.domain.revision import policy_revision
from ig_policy.engine.wasm import read_bundle

ENTRYPOINT = "ig/ctx/decision"


def build_wasm_bundle(policies: Path, out: Path, *, opa: str, data_path: str = "ig/config") -> str:
    """Write the bundle to ``out`` and return its revision."""
    sources = [path.read_text(encoding="utf-8") for path in sorted(policies.rglob("*.rego"))]
    with tempfile.TemporaryDirectory(prefix="ig-wasm-") as scratch:
        unstamped = Path(scratch) / "bundle.tar.gz"
        _opa_build(opa, policies, unstamped)
        revision = policy_revision(sources, read_bundle(unstamped, require_revision=False).data_at(data_path))
    _opa_build(opa, policies, out, "--revision", revision)
    return revision


def _opa_build(opa: str, policies: Path, out: Path, *extra: str) -> None:
    done = subprocess.run([opa, "build", "-t", "wasm", "-e", ENTRYPOINT, *extra, str(policies), "-o", str(out)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"opa build failed: {done.stderr.strip() or done.stdout.strip()}")
