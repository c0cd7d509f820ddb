"""The benchmarks' load generator (tools/loadgen, Go): build it, hand it calls, read back what each took.

Benchmarks that compare a service with what it wraps drive both sides with this one client, so the comparison
measures the service rather than a Python client's own event loop and GIL (see tools/loadgen/main.go).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ig_infra.paths import Paths
from ig_infra.prereqs import require
from ig_infra.process import InfraError

SOURCE = Paths.from_environment().repo / "tools" / "loadgen"


def loadgen_binary(paths: Paths | None = None) -> Path:
    """``go build`` the generator into the cache (Go's build cache makes an unchanged rebuild a no-op)."""
    paths = paths or Paths.from_environment()
    # Named by its source: the cache is shared by every checkout on the host, and a benchmark must not run a
    # generator another checkout built from other code (e.g. without a flag this one passes).
    digest = hashlib.sha256(b"".join((SOURCE / name).read_bytes() for name in ("main.go", "go.mod", "go.sum")))
    target = paths.cache / "loadgen" / "bin" / f"loadgen-{digest.hexdigest()[:12]}"
    require("go")
    result = subprocess.run(["go", "build", "-trimpath", "-o", str(target), "."], cwd=SOURCE, capture_output=True,
                            text=True, env={**os.environ, "CGO_ENABLED": "0"})
    if result.returncode != 0:
        raise InfraError(f"building tools/loadgen failed:\n{result.stderr[-3000:]}")
    return target


def http_call(url: str, body: Any = None, *, method: str = "POST", headers: dict[str, str] | None = None
              ) -> dict[str, Any]:
    return {"method": method, "url": url, "body": "" if body is None else json.dumps(body),
            "headers": headers or {}}


def grpc_call(method: str, message: bytes) -> dict[str, Any]:
    """``method`` as ``/package.Service/Method``; ``message`` already serialised."""
    return {"grpc_method": method, "message": base64.b64encode(message).decode("ascii")}


@dataclass
class LoadResult:
    latencies_ms: list[float]  # from each call's due time
    elapsed_s: float
    outcomes: dict[str, int]
    matched: int
    cpu_s: float
    sent_latencies_ms: list[float] = field(default_factory=list)  # from each call's send
    calls: int = field(init=False)

    def __post_init__(self) -> None:
        self.calls = len(self.latencies_ms)


async def drive(binary: Path, calls: Sequence[dict[str, Any]], *, count: int, concurrency: int, rate: float = 0.0,
                arrivals: str = "uniform", duration_s: float = 0.0, warmup: int = 0, grpc_target: str = "",
                match: str = "", tls_dir: Path | None = None, conns: int = 1) -> LoadResult:
    """``count`` calls round-robin over ``calls``: open loop at ``rate`` calls/s in all (``uniform``: call i due
    at i / rate; ``poisson``: each caller at its own Poisson moments, none due after ``duration_s`` when given, so
    ``count`` is then a bound), or closed loop at rate 0. ``tls_dir``: gRPC over mTLS as that workload certificate.
    ``conns``: gRPC connections the calls take in turn (a service with several worker processes on one port gets
    connections, not calls, spread by the kernel)."""
    with tempfile.TemporaryDirectory() as scratch:
        requests, report = Path(scratch) / "calls.json", Path(scratch) / "report.json"
        requests.write_text(json.dumps(list(calls)))
        process = await asyncio.create_subprocess_exec(
            str(binary), "-requests", str(requests), "-count", str(count), "-concurrency", str(concurrency),
            "-rate", str(rate), "-arrivals", arrivals, "-duration", f"{duration_s}s", "-warmup", str(warmup),
            "-grpc-target", grpc_target, "-tls-dir", str(tls_dir or ""), "-match", match,
            "-conns", str(conns), "-out", str(report), stderr=asyncio.subprocess.PIPE)
        _, stderr = await process.communicate()
        if process.returncode != 0:
            raise InfraError(f"loadgen failed ({process.returncode}): {stderr.decode()[-2000:]}")
        figures = json.loads(report.read_text())
    return LoadResult(latencies_ms=figures["latencies_ms"], elapsed_s=figures["elapsed_s"],
                      outcomes=figures["outcomes"], matched=figures["matched"], cpu_s=figures["cpu_s"],
                      sent_latencies_ms=figures["sent_latencies_ms"])
