"""The evidence service as a real process for end-to-end tests, and the ``ig-evidence`` CLI they drive."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ig.evidence.v1 import evidence_pb2_grpc
from ig.ledger.v1 import ledger_pb2_grpc
from ig_common.authz import USER_TOKEN_METADATA, ForwardedUser, sign_user_token
from ig_common.grpc_client import channel_as
from ig_common.spiffe import SpiffeId
from ig_infra.process import free_port

REPO = Path(__file__).resolve().parents[4]
EPOCH = "1767225600"
COLLECTED_TYPES = ["load-report", "chaos-report", "aca-report", "dr-log", "rtbf-log", "residency-proof", "slo-report",
                   "decision-coverage", "multi-region", "migration-timeline"]


@dataclass(frozen=True)
class RunningEvidence:
    grpc_target: str
    http_port: int
    database_url: str  # the superuser's, for the tests that tamper with tables below the API
    blob_dir: Path
    pid: int


def wait_healthy(process: subprocess.Popen[str], http_port: int, what: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"{what} did not start: {process.stdout.read() if process.stdout else ''}"
                                   ) from None
            time.sleep(0.2)


@contextmanager
def running(command: list[str], env: dict[str, str], http_port: int, what: str
            ) -> Iterator[subprocess.Popen[str]]:
    """``command`` as a process, once its /healthz on ``http_port`` answers; stopped on leaving."""
    process = subprocess.Popen(command, env={**env, "PATH": os.environ["PATH"]}, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    wait_healthy(process, http_port, what)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


@contextmanager
def evidence_service(env: dict[str, str], database_url: str, blob_dir: Path) -> Iterator[RunningEvidence]:
    """The evidence service as its own roles (``env`` from ``infra.env(database_url, "evidence")``)."""
    http_port, grpc_port = free_port(), free_port()
    process_env = {**env, "IG_HTTP_PORT": str(http_port), "IG_PUBLIC_PORT": str(free_port()),
                   "IG_GRPC_PORT": str(grpc_port), "IG_BLOB_STORE_PATH": str(blob_dir)}
    with running([sys.executable, "-m", "ig_evidence.app"], process_env, http_port, "evidence service") as process:
        yield RunningEvidence(f"127.0.0.1:{grpc_port}", http_port, database_url, blob_dir, process.pid)


@contextmanager
def evidence_on_own_database(infra: Any, prefix: str, blob_dir: Path, **settings: str) -> Iterator[RunningEvidence]:
    """The evidence service on a database of its own (dropped afterwards), so that a test tampering with or filling
    the ledger disturbs no other; ``infra`` is the ig_infra pytest fixture, ``settings`` extra IG_* values."""
    own_url = infra.new_database(prefix)
    try:
        with evidence_service({**infra.env(own_url, "evidence"), **settings}, own_url, blob_dir) as running:
            yield running
    finally:
        infra.drop_database(own_url)


def write_inputs(root: Path, types: list[str] = COLLECTED_TYPES) -> Path:
    for artifact_type in types:
        (root / artifact_type).mkdir(parents=True, exist_ok=True)
        (root / artifact_type / f"{artifact_type}.json").write_text(f'{{"type": "{artifact_type}", "ok": true}}\n')
    return root


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "ig_evidence.cli", *args], capture_output=True, text=True,
                            env={**os.environ, "SOURCE_DATE_EPOCH": EPOCH}, cwd=REPO, timeout=300)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def pin(public_key: Path, signers: Path, *tenants: str, name: str = "e2e release key") -> Path:
    """``ig-evidence trust``: the key pinned for ``tenants`` in the trusted-signers file ``signers``."""
    cli("trust", str(public_key), "--signers", str(signers), *(f"--tenant={t}" for t in tenants), "--name", name)
    return signers


def evidence_stub(service: RunningEvidence) -> evidence_pb2_grpc.EvidenceServiceStub:
    return evidence_pb2_grpc.EvidenceServiceStub(channel_as("release", service.grpc_target))


def ledger_stub(service: RunningEvidence, identity: str = "release") -> ledger_pb2_grpc.LedgerServiceStub:
    return ledger_pb2_grpc.LedgerServiceStub(channel_as(identity, service.grpc_target))


def forwarded_auditor(tenant: str) -> tuple[tuple[str, str], ...]:
    """The metadata the portal sends for a signed-in auditor of ``tenant``: a user token signed with its own key."""
    portal = SpiffeId("maestro.local", "ig", "audit-portal")
    key = (Path(os.environ["IG_IDENTITIES"]) / "audit-portal" / "tls.key").read_bytes()
    token = sign_user_token(key, portal, portal.sibling("evidence"),
                            ForwardedUser(f"auditor@{tenant}.example", tenant, ("auditor",)), lifetime=30)
    return ((USER_TOKEN_METADATA, token),)
