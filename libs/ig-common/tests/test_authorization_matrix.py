"""Every gRPC method of every service against every kind of caller, through a real mTLS server and the real table.

Each method is served by a stand-in handler that answers at once, with the suite's own ServerSecurity (the dev CA's
mTLS, policies/authz/grpc-methods.yaml, the shared interceptor): what is tested is who gets through to a handler.
    no client certificate            -> handshake refused (the client sees UNAVAILABLE)
    a certificate from another CA    -> handshake refused
    the trust domain, unknown name   -> UNAUTHENTICATED
    a known identity not granted     -> PERMISSION_DENIED naming the method and the caller
    the granted identity             -> OK
The real services are wired with the same bootstrap (ig_common.service); e2e/test_evidence_service.py replays the
issue's attacks on one of them.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import MethodDescriptor
from ig_common.authz import AuthorizationTable
from ig_infra.pki import DevCA
from ig_infra.process import free_port
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[3]
TABLE_PATH = REPO / "policies" / "authz" / "grpc-methods.yaml"
TABLE = AuthorizationTable.load(TABLE_PATH)
STANDIN_SERVER = Path(__file__).with_name("standin_server.py")


def _standin_module() -> Any:
    spec = importlib.util.spec_from_file_location("standin_server", STANDIN_SERVER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


METHODS: dict[str, MethodDescriptor] = _standin_module().suite_methods()


def test_every_method_has_a_row_and_every_row_a_method() -> None:
    """Default deny would refuse a new method for everyone; a row is how it gets its callers. A stale row is a
    grant nobody reviews."""
    served = set(METHODS)
    rows = {m for m in TABLE.methods if not m.startswith("/grpc.reflection.")}
    assert served - rows == set(), f"methods without a row in {TABLE_PATH.name}: {sorted(served - rows)}"
    assert rows - served == set(), f"rows naming no method: {sorted(rows - served)}"


def granted_to(method: str) -> str:
    names = sorted(TABLE.methods[method])
    return "operator" if names == ["*"] else names[0]


def not_granted_to(method: str) -> str | None:
    names = TABLE.methods[method]
    if "*" in names:
        return None
    return sorted(TABLE.identities - names)[0]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pki")
    ours, theirs = DevCA.load_or_create(root / "ca"), DevCA.load_or_create(root / "other-ca", common_name="another CA")
    dirs = {name: ours.issue(name, root / name).directory for name in TABLE.identities}
    dirs["intruder"] = ours.issue("intruder", root / "intruder").directory
    dirs["release@other-namespace"] = ours.issue("release", root / "release-other-ns", namespace="elsewhere").directory
    dirs["release@other-ca"] = theirs.issue("release", root / "release-other-ca").directory
    dirs["server"] = ours.issue("policy", root / "server").directory
    return dirs


@pytest.fixture(scope="module")
def server(pki: dict[str, Path]) -> Iterator[str]:
    global METRICS_PORT
    port, METRICS_PORT = free_port(), free_port()
    process = subprocess.Popen([sys.executable, str(STANDIN_SERVER), str(pki["server"]), str(TABLE_PATH), str(port),
                                str(METRICS_PORT)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "serving"
        yield f"localhost:{port}"
    finally:
        process.kill()
        process.wait(10)



def call(target: str, credentials: grpc.ChannelCredentials, path: str) -> grpc.StatusCode:
    method = METHODS[path]
    with grpc.secure_channel(target, credentials) as channel:
        try:
            if method.client_streaming and method.server_streaming:
                list(channel.stream_stream(path)(iter([b""]), timeout=5))
            elif method.client_streaming:
                channel.stream_unary(path)(iter([b""]), timeout=5)
            elif method.server_streaming:
                list(channel.unary_stream(path)(b"", timeout=5))
            else:
                channel.unary_unary(path)(b"", timeout=5)
        except grpc.RpcError as error:
            return error.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def credentials_of(directory: Path, *, with_certificate: bool = True) -> grpc.ChannelCredentials:
    ca = (directory / "ca.crt").read_bytes()
    if not with_certificate:
        return grpc.ssl_channel_credentials(ca)
    return grpc.ssl_channel_credentials(ca, (directory / "tls.key").read_bytes(), (directory / "tls.crt").read_bytes())


REFUSALS = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)


METRICS_PORT = 0


def refused(method: str, reason: str) -> float:
    """The server's ig_grpc_authz_refused_total for one method and reason, from its /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=5) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "ig_grpc_authz_refused_total" and sample.labels == {"method": method,
                                                                                  "reason": reason}:
                return float(sample.value)
    return 0.0


@pytest.mark.parametrize("path", sorted(METHODS))
def test_each_kind_of_caller_gets_what_the_table_says(server: str, pki: dict[str, Path], path: str) -> None:
    ours = pki["server"]
    assert call(server, credentials_of(ours, with_certificate=False), path) is grpc.StatusCode.UNAVAILABLE
    # The other CA's certificate names a granted identity: only the chain decides, and it is refused.
    foreign = grpc.ssl_channel_credentials((ours / "ca.crt").read_bytes(),
                                           (pki["release@other-ca"] / "tls.key").read_bytes(),
                                           (pki["release@other-ca"] / "tls.crt").read_bytes())
    assert call(server, foreign, path) is grpc.StatusCode.UNAVAILABLE

    before = refused(path, "unknown_identity")
    assert call(server, credentials_of(pki["intruder"]), path) is grpc.StatusCode.UNAUTHENTICATED
    assert call(server, credentials_of(pki["release@other-namespace"]), path) is grpc.StatusCode.UNAUTHENTICATED
    assert refused(path, "unknown_identity") == before + 2

    stranger = not_granted_to(path)
    if stranger is not None:
        before = refused(path, "not_granted")
        assert call(server, credentials_of(pki[stranger]), path) is grpc.StatusCode.PERMISSION_DENIED
        assert refused(path, "not_granted") == before + 1
    answered = call(server, credentials_of(pki[granted_to(path)]), path)
    if path.startswith("/grpc.health."):
        # The real health servicer answers these (grpcio's lacks List): the caller got past authorization.
        assert answered not in REFUSALS, answered
    else:
        assert answered is grpc.StatusCode.OK


def test_permission_denied_names_the_method_and_the_caller(server: str, pki: dict[str, Path]) -> None:
    path = "/ig.flags.v1.FlagService/SetFlag"
    with grpc.secure_channel(server, credentials_of(pki["burn"])) as channel, \
            pytest.raises(grpc.RpcError) as denied:
        channel.unary_unary(path)(b"", timeout=5)
    assert denied.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert denied.value.details() == f"{path} is not granted to spiffe://maestro.local/ns/ig/sa/burn"


@pytest.mark.parametrize(("kind", "row", "owner", "stranger"), [
    ("evidence.manifest", "evidence.manifest", "release", "audit-portal"),   # an exact row
    ("ig.audit.access", "ig.audit.*", "audit-portal", "release"),            # under a prefix row
    ("release.anything.at.all", "release.*", "release", "bench"),
    ("release", None, None, "release"),                                      # the prefix itself is not below it
    ("evidence.manifestx", None, None, "release"),                           # exact rows match exactly
    ("unknown.kind", None, None, "release"),
])
def test_a_ledger_kind_is_owned_through_the_one_row_that_covers_it(kind: str, row: str | None, owner: str | None,
                                                                    stranger: str) -> None:
    assert TABLE.ledger_kind_row(kind) == row  # the bounded name ledger metrics label with
    assert TABLE.may_append(kind, stranger) is False
    if owner is not None:
        assert TABLE.may_append(kind, owner) is True
