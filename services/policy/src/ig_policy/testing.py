"""Helpers for tests and the benchmark: a private OPA server, the service as a subprocess, golden cases.

Tests start their own OPA (same binary, same policies, locked the same way: only the bearer of a token of its own
may query it) on a free port so they never depend on the shared sidecar's state, and start the service as a real
process the way ``make up`` does.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from ig_common.ports import free_port

REPO = Path(__file__).resolve().parents[4]
POLICIES = REPO / "policies" / "rego"
GOLDEN = REPO / "policies" / "golden"


GOLDEN_APPROVER = "golden-approver"


def golden_approver_key() -> Any:
    """The approver that signs the golden cases' break-glass grants: a fixed P-256 key (tests only, never trusted
    outside a test's approvers file), so the golden inputs can name its key id."""
    import hashlib

    from cryptography.hazmat.primitives.asymmetric import ec

    seed = int.from_bytes(hashlib.sha256(b"ig-policy golden break-glass approver").digest(), "big")
    order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    return ec.derive_private_key(seed % (order - 1) + 1, ec.SECP256R1())


def write_approvers_file(directory: Path, *, max_grant_minutes: int = 24 * 60,
                         tenants: tuple[str, ...] = ("alpha", "beta", "gamma"),
                         approvers: dict[str, Any] | None = None) -> Path:
    """An approvers file (IG_BREAKGLASS_APPROVERS_PATH) trusting ``approvers`` (name -> private key; the golden
    approver by default) for each of ``tenants``. The default lifetime is a day, so the golden cases' lifetimes are
    judged by the Rego's own cap."""
    import yaml

    from ig_policy.breakglass import write_approver_key

    entries = []
    for name, key in (approvers or {GOLDEN_APPROVER: golden_approver_key()}).items():
        written = write_approver_key(directory / f"{name}.key", key)
        entries.append({"name": name, **written})
    path = directory / "approvers.yaml"
    path.write_text(yaml.safe_dump({"tenants": {t: {"maxGrantMinutes": max_grant_minutes, "approvers": entries}
                                                for t in tenants}}), encoding="utf-8")
    return path


def golden_grant(facts: dict[str, Any], subject: str) -> str:
    """The signed grant whose verification yields ``facts`` (a golden input's context.break_glass.verified)."""
    import jwt

    from ig_policy.breakglass import key_id_of
    from ig_policy.domain.breakglass import ALGORITHM, GRANT_TYPE

    def seconds(text: str) -> int:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())

    key = golden_approver_key()
    claims = {"iss": facts["approver"], "sub": subject, "tenant": facts["tenant"], "scope": facts["scope"],
              "justification": facts["justification"], "jti": facts["jti"],
              "iat": seconds(facts["issued_at"]), "exp": seconds(facts["expires_at"])}
    return jwt.encode(claims, key, algorithm=ALGORITHM, headers={"typ": GRANT_TYPE, "kid": key_id_of(key.public_key())})


# The instant most golden cases are dated (a Monday inside every tenant's window): the test clock's default.
GOLDEN_NOW = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


class SettableClock:
    """An in-process test clock for DecisionService(clock=...): tests move ``moment`` between decisions."""

    def __init__(self, moment: datetime = GOLDEN_NOW) -> None:
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment


def set_test_clock(path: Path, moment: datetime | str) -> None:
    """Point a service started with IG_TEST_CLOCK_FILE=path at ``moment`` (atomic: a decision never reads half)."""
    text = moment if isinstance(moment, str) else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
    scratch = path.with_name(path.name + ".tmp")
    scratch.write_text(text, encoding="utf-8")
    os.replace(scratch, path)


def opa_binary() -> str:
    """The OPA that ig-infra builds (``uv run ig-infra tool opa``)."""
    from ig_infra.components.opa import opa_binary as built  # type: ignore[import-untyped]
    from ig_infra.paths import Paths  # type: ignore[import-untyped]

    return str(built(Paths.from_environment().cache))


def wasm_bundle(out: Path, policies: Path = POLICIES, opa: str | None = None) -> Path:
    """The in-process module of ``policies`` at ``out`` (IG_POLICY_WASM_BUNDLE), built as ``ig-policy wasm-build``."""
    from ig_policy.engine.wasm_build import build_wasm_bundle

    build_wasm_bundle(policies, out, opa=opa or opa_binary())
    return out


def _wait_http(url: str, process: subprocess.Popen[bytes], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not become healthy at {url}")


def _wait_port(port: int, process: subprocess.Popen[bytes], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} is not listening on 127.0.0.1:{port}")


def stop_process(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM, then SIGKILL after 20 s; the exit status (-9 when killed)."""
    if process.poll() is None:
        process.terminate()
        try:
            return process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            return -9
    return int(process.returncode)


@dataclass(frozen=True)
class OpaServer:
    """A private OPA whose API answers only the bearer of ``token`` (policies/opa-system/authz.rego)."""

    url: str
    pid: int
    token: str
    token_file: Path

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def env(self) -> dict[str, str]:
        """The policy service's settings that point it at this OPA."""
        return {"IG_OPA_URL": self.url, "IG_OPA_TOKEN_FILE": str(self.token_file)}


@contextmanager
def opa_server(policies: Path = POLICIES) -> Iterator[OpaServer]:
    """``opa run --server``, locked as ig-infra runs it, on a free loopback port with a token of its own."""
    from ig_infra.components.opa import ensure_opa_token, locked_opa_arguments  # type: ignore[import-untyped]

    port = free_port()
    with tempfile.TemporaryDirectory(prefix="ig-opa-") as scratch:
        token = ensure_opa_token(Path(scratch))
        process = subprocess.Popen(
            [opa_binary(), "run", "--server", "--addr", f"127.0.0.1:{port}", "--log-level", "error",
             *locked_opa_arguments(token, policies)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            _wait_http(f"http://127.0.0.1:{port}/health?bundles", process, "OPA")
            yield OpaServer(f"http://127.0.0.1:{port}", process.pid, token.value, token.token_file)
        finally:
            stop_process(process)


@dataclass
class RunningService:
    grpc_address: str
    http_url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    # AuthZEN over HTTPS (a client certificate and a workload token: ig_common.http_client.client_as)
    authzen_url: str = ""
    # forward-auth over HTTPS (a client certificate the table grants GET /forward-auth)
    forward_auth_url: str = ""

    def stop(self) -> int:
        return stop_process(self.process)


@contextmanager
def policy_service(env: dict[str, str], log_path: Path, **settings: str) -> Iterator[RunningService]:
    """``python -m ig_policy.app`` on free ports; ``settings`` are extra IG_* variables (without the prefix)."""
    http_port, grpc_port, authzen_port, forward_auth_port = free_port(), free_port(), free_port(), free_port()
    # The caller's environment minus its IG_* settings (coverage and OTEL variables pass through).
    inherited = {name: value for name, value in os.environ.items() if not name.startswith("IG_")}
    full_env = {**inherited, **env, "IG_HTTP_PORT": str(http_port),
                "IG_GRPC_PORT": str(grpc_port), "IG_AUTHZEN_PORT": str(authzen_port),
                "IG_FORWARD_AUTH_PORT": str(forward_auth_port),
                "OTEL_TRACES_EXPORTER": "none"}
    # A WAL directory of this service's own, next to its log (a restart on the same one: pass decision_log_wal_dir).
    full_env["IG_DECISION_LOG_WAL_DIR"] = str(log_path.with_suffix(".wal"))
    full_env.update({f"IG_{name.upper()}": value for name, value in settings.items()})
    with log_path.open("wb") as log_file:
        process = subprocess.Popen([sys.executable, "-m", "ig_policy.app"], env=full_env, stdout=log_file,
                                   stderr=subprocess.STDOUT)
    service = RunningService(f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{http_port}", process, log_path,
                             f"https://127.0.0.1:{authzen_port}", f"https://127.0.0.1:{forward_auth_port}")
    try:
        # Generous: start-up imports take long on a busy machine (and longer under coverage).
        _wait_http(f"{service.http_url}/healthz", process, "the policy service", timeout=120)
        _wait_port(authzen_port, process, "the policy service's AuthZEN listener")
        _wait_port(forward_auth_port, process, "the policy service's forward-auth listener")
        yield service
    except RuntimeError as error:
        raise RuntimeError(f"{error}\n{log_path.read_text(errors='replace')[-3000:]}") from error
    finally:
        service.stop()


@dataclass(frozen=True)
class GoldenCase:
    file: str
    name: str
    input: dict[str, Any]
    expect: dict[str, Any]

    @property
    def id(self) -> str:
        return f"{self.file}:{self.name}"

    def mismatches(self, decision: dict[str, Any]) -> list[str]:
        """What differs between ``decision`` (result, rule_id, explanation, reasons, obligations) and the case."""
        expect, problems = self.expect, []
        if decision.get("result") != expect["result"]:
            problems.append(f"result {decision.get('result')} != {expect['result']}")
        if decision.get("rule_id") != expect["rule_id"]:
            problems.append(f"rule_id {decision.get('rule_id')} != {expect['rule_id']}")
        if expect["explanation_contains"] not in str(decision.get("explanation")):
            problems.append(f"explanation {decision.get('explanation')!r} lacks {expect['explanation_contains']!r}")
        if "obligations" in expect and list(decision.get("obligations", [])) != expect["obligations"]:
            problems.append(f"obligations {decision.get('obligations')} != {expect['obligations']}")
        reason_ids = [r["rule_id"] for r in decision.get("reasons", [])]
        if "reason_ids" in expect and reason_ids != expect["reason_ids"]:
            problems.append(f"reasons {reason_ids} != {expect['reason_ids']}")
        return problems


def golden_cases(directory: Path = GOLDEN) -> list[GoldenCase]:
    cases = []
    for path in sorted(directory.glob("*.json")):
        for item in json.loads(path.read_text(encoding="utf-8"))["cases"]:
            cases.append(GoldenCase(path.stem, item["name"], item["input"], item["expect"]))
    return cases


def proto_from_input(document: dict[str, Any]) -> Any:
    """The DecideRequest for a golden input, or None when the input cannot be said in protobuf at all
    (a string where a number belongs, an unparseable time...): those cases only exist at the Rego layer."""
    from datetime import datetime

    from google.protobuf.timestamp_pb2 import Timestamp
    from ig.policy.v1 import policy_pb2

    def stamp(text: Any) -> Timestamp | None:
        if not isinstance(text, str):
            return None
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        if moment.tzinfo is None:
            return None  # a Timestamp is an instant; a local time without its zone has no protobuf form
        result = Timestamp()
        result.FromDatetime(moment)
        return result

    try:
        actor, resource, context = (document.get(part, {}) for part in ("actor", "resource", "context"))
        risk = context.get("session_risk", 0)
        if not isinstance(risk, int) or isinstance(risk, bool) or isinstance(actor.get("roles", []), str):
            return None
        when = stamp(context.get("time"))
        if when is None:
            return None
        message = policy_pb2.DecideRequest(
            actor=policy_pb2.Actor(id=actor.get("id", ""), tenant=actor.get("tenant", ""),
                                   roles=actor.get("roles", []), purposes=actor.get("purposes", [])),
            resource=policy_pb2.Resource(**{k: resource.get(k, "") for k in
                                            ("type", "id", "tenant", "purpose", "region", "classification")}),
            action=document.get("action", ""),
            context=policy_pb2.Context(time=when, network_zone=context.get("network_zone", ""),
                                       device_trust=context.get("device_trust", ""), session_risk=risk,
                                       auth_level=context.get("auth_level", ""), region=context.get("region", "")),
        )
        grant = context.get("break_glass")
        if grant is not None:
            if "rejection" in grant:
                return None  # what the service says of a grant it refused: no request produces it verbatim
            if "verified" in grant:
                # The verified facts come back out of a grant the golden approver signs (write_approvers_file).
                message.context.break_glass.grant = golden_grant(grant["verified"], actor.get("id", ""))
            message.context.break_glass.justification = grant.get("justification", "")
            expires = stamp(grant.get("expires_at"))
            if expires is not None:
                message.context.break_glass.expires_at.CopyFrom(expires)
        return message
    except (TypeError, ValueError, AttributeError):
        return None


def decision_log_key_env(directory: Path) -> dict[str, str]:
    """A fresh pepper and replay key pair in ``directory``: the service's IG_DECISION_LOG_* settings and, for the
    replay tool, IG_DECISION_LOG_REPLAY_KEY_FILE."""
    from ig_policy.protection_keys import write_decision_log_keys

    paths = write_decision_log_keys(directory)
    return {"IG_DECISION_LOG_PEPPER_FILE": str(paths["pepper"]),
            "IG_DECISION_LOG_INPUT_KEY_FILE": str(paths["input_key"]),
            "IG_DECISION_LOG_REPLAY_KEY_FILE": str(paths["replay_key"])}


def new_record_protection() -> tuple[Any, Any]:
    """A pepper and replay key pair made in memory: (RecordProtection for the log, InputOpener for replay)."""
    import secrets as _secrets

    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from ig_policy.domain.protection import InputOpener, InputSealer, Pseudonymizer, RecordProtection

    key = X25519PrivateKey.generate()
    protection = RecordProtection(Pseudonymizer(_secrets.token_bytes(32)), InputSealer(key.public_key()))
    return protection, InputOpener(key)


def write_key_files(opener: Any, private_path: Path) -> None:
    """The replay tool's private key of ``opener`` as a PEM file (0600)."""
    from cryptography.hazmat.primitives import serialization

    with os.fdopen(os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out:
        out.write(opener.private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))


def child_pids(pid: int) -> list[int]:
    """The processes ``pid`` started (every thread's children): a service's writer, a supervisor's workers."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


async def logged_decision_ids(dsn: str, ids: list[str], within_s: float) -> list[str]:
    """Which of ``ids`` are in policy.decision_log, waiting up to ``within_s`` for all of them to arrive."""
    connection = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + within_s
        while True:
            rows = await connection.fetch("SELECT decision_id FROM policy.decision_log WHERE decision_id = ANY($1)",
                                          ids)
            if len(rows) >= len(set(ids)) or time.monotonic() > deadline:
                return [row["decision_id"] for row in rows]
            await asyncio.sleep(0.2)
    finally:
        await connection.close()
