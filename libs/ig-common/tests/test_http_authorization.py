"""Internal HTTP APIs: the workload token (ig_common.authz.workload_token), the guard that applies the table's
``http:`` rows (ig_common.authz.http_guard), and the HTTPS listener (ig_common.http_server.serve_http(tls=...)),
which takes a renewed certificate without a restart. On certificates of a development CA of the test's own."""

from __future__ import annotations

import asyncio
import datetime
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from fastapi import FastAPI
from ig_common.authz import AuthorizationTable, TableError
from ig_common.authz.http_guard import CALLER_SCOPE_KEY, guarded_by_client_certificate, guarded_by_table
from ig_common.authz.workload_token import WorkloadTokenError, WorkloadTokenVerifier, sign_workload_token
from ig_common.http_client import WorkloadTokenAuth
from ig_common.http_server import serve_http
from ig_common.tls import CA_FILE, CERT_FILE, KEY_FILE, WorkloadCertificate
from ig_infra.pki import DevCA
from ig_infra.process import free_port
from starlette.requests import Request

TABLE = AuthorizationTable.from_document({
    "identities": ["policy", "gateway", "operator"],
    "methods": {"/grpc.health.v1.Health/Check": ["*"]},
    "http": {"POST /access/v1/evaluation": ["gateway"]},
})


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pki")
    ours, theirs = DevCA.load_or_create(root / "ca"), DevCA.load_or_create(root / "other", common_name="another CA")
    found = {name: ours.issue(name, root / name).directory for name in ("policy", "gateway", "operator", "intruder")}
    found["gateway@other-ca"] = theirs.issue("gateway", root / "gateway-other-ca").directory
    found["gateway@other-ns"] = ours.issue("gateway", root / "gateway-other-ns", namespace="elsewhere").directory
    return found


def token(pki: dict[str, Path], signer: str, presented: str | None = None, audience: str = "policy",
          **signing: Any) -> str:
    key = (pki[signer] / KEY_FILE).read_bytes()
    cert_dir = pki[presented or signer]
    issuer = WorkloadCertificate(cert_dir).spiffe_id
    callee = WorkloadCertificate(pki["policy"]).spiffe_id.sibling(audience)
    return sign_workload_token(key, (cert_dir / CERT_FILE).read_bytes(), issuer, callee, **signing)


def verifier(pki: dict[str, Path]) -> WorkloadTokenVerifier:
    policy = WorkloadCertificate(pki["policy"])
    return WorkloadTokenVerifier(policy.current().ca_pem, policy.spiffe_id)


def test_a_token_signed_with_the_workload_key_names_its_certificate(pki: dict[str, Path]) -> None:
    assert str(verifier(pki).verify(token(pki, "gateway"))) == "spiffe://maestro.local/ns/ig/sa/gateway"


@pytest.mark.parametrize(("signing", "problem"), [
    ({"signer": "operator", "presented": "gateway"}, "Signature verification failed"),
    ({"signer": "gateway@other-ca"}, "not issued by this CA"),
    ({"signer": "gateway", "audience": "evidence"}, "Audience doesn't match"),
    ({"signer": "gateway", "now": time.time() - 120}, "expired"),
])
def test_tokens_short_of_valid_are_refused(pki: dict[str, Path], signing: dict[str, Any], problem: str) -> None:
    with pytest.raises(WorkloadTokenError, match=problem):
        verifier(pki).verify(token(pki, **signing))


def test_a_token_living_longer_than_a_minute_is_refused(pki: dict[str, Path]) -> None:
    import jwt
    from cryptography.hazmat.primitives import serialization

    good = token(pki, "gateway")
    header = jwt.get_unverified_header(good)
    claims = jwt.decode(good, options={"verify_signature": False})
    claims["exp"] = claims["iat"] + 600
    key = serialization.load_pem_private_key((pki["gateway"] / KEY_FILE).read_bytes(), password=None)
    long_lived = jwt.encode(claims, key, algorithm="ES256", headers={"x5c": header["x5c"]})  # type: ignore[arg-type]
    with pytest.raises(WorkloadTokenError, match="lifetime"):
        verifier(pki).verify(long_lived)


def test_signing_refuses_a_lifetime_over_a_minute(pki: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="lifetime"):
        token(pki, "gateway", lifetime=61)


def test_http_rows_must_name_a_method_and_a_path_and_known_identities() -> None:
    base = {"identities": ["gateway"], "methods": {}}
    with pytest.raises(TableError, match="expected '<HTTP method> /path'"):
        AuthorizationTable.from_document({**base, "http": {"/access/v1/evaluation": ["gateway"]}})
    with pytest.raises(TableError, match="unknown identities"):
        AuthorizationTable.from_document({**base, "http": {"POST /x": ["nobody"]}})
    with pytest.raises(TableError, match="only for methods"):
        AuthorizationTable.from_document({**base, "http": {"POST /x": ["*"]}})


def guarded_app(pki: dict[str, Path]) -> Any:
    app = FastAPI()

    @app.post("/access/v1/evaluation")
    async def evaluation(request: Request) -> dict[str, str]:
        return {"caller": str(request.scope[CALLER_SCOPE_KEY])}

    @app.post("/unlisted")
    async def unlisted() -> dict[str, str]:
        return {}

    return guarded_by_table(app, TABLE, WorkloadCertificate(pki["policy"]))


@pytest.mark.parametrize(("headers", "status", "detail"), [
    ({}, 401, "Authorization: a Bearer workload token is required"),
    ({"Authorization": "Basic Z2F0ZXdheTo="}, 401, "Authorization: a Bearer workload token is required"),
    ({"Authorization": "Bearer not-a-jwt"}, 401, "Authorization: invalid workload token"),
])
async def test_the_guard_refuses_without_a_valid_token(pki: dict[str, Path], headers: dict[str, str], status: int,
                                                      detail: str) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=guarded_app(pki)), base_url="http://t") as client:
        reply = await client.post("/access/v1/evaluation", headers=headers)
    assert (reply.status_code, reply.headers["content-type"]) == (status, "application/problem+json")
    assert reply.json()["detail"].startswith(detail)


@pytest.mark.parametrize(("caller", "path", "status", "detail"), [
    ("gateway", "/access/v1/evaluation", 200, None),
    ("operator", "/access/v1/evaluation", 403,
     "POST /access/v1/evaluation is not granted to spiffe://maestro.local/ns/ig/sa/operator"),
    ("gateway", "/unlisted", 403, "POST /unlisted is not granted to spiffe://maestro.local/ns/ig/sa/gateway"),
    ("intruder", "/access/v1/evaluation", 401,
     "caller identity spiffe://maestro.local/ns/ig/sa/intruder is not known to the authorization table"),
    ("gateway@other-ns", "/access/v1/evaluation", 401,
     "caller identity spiffe://maestro.local/ns/elsewhere/sa/gateway is not known to the authorization table"),
])
async def test_the_guard_applies_the_tables_http_rows(pki: dict[str, Path], caller: str, path: str, status: int,
                                                    detail: str | None) -> None:
    auth = {"Authorization": f"Bearer {token(pki, caller)}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=guarded_app(pki)), base_url="http://t") as client:
        reply = await client.post(path, headers=auth)
    assert reply.status_code == status, reply.text
    if detail is None:
        assert reply.json() == {"caller": "spiffe://maestro.local/ns/ig/sa/gateway"}
    else:
        assert reply.json()["detail"] == detail



def _served_serial(port: int, client_dir: Path) -> int:
    context = ssl.create_default_context(cafile=str(client_dir / CA_FILE))
    context.load_cert_chain(client_dir / CERT_FILE, client_dir / KEY_FILE)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


async def test_the_https_listener_serves_a_renewed_certificate_without_a_restart(tmp_path: Path) -> None:
    ca = DevCA.load_or_create(tmp_path / "ca")
    server_dir = ca.issue("policy", tmp_path / "server").directory
    client_dir = ca.issue("gateway", tmp_path / "client").directory
    port, stop = free_port(), asyncio.Event()
    serving = asyncio.create_task(serve_http(FastAPI(), "127.0.0.1", port, stop,
                                             tls=WorkloadCertificate(server_dir), certificate_check_seconds=0.1))
    try:
        for _ in range(100):
            try:
                first = await asyncio.to_thread(_served_serial, port, client_dir)
                break
            except OSError:
                await asyncio.sleep(0.1)
        renewed = ca.issue("policy", server_dir, not_before=datetime.datetime.now(datetime.UTC)
                           - datetime.timedelta(minutes=1))
        expected = x509.load_pem_x509_certificate((renewed.directory / CERT_FILE).read_bytes()).serial_number
        assert expected != first
        for _ in range(50):
            await asyncio.sleep(0.1)
            if await asyncio.to_thread(_served_serial, port, client_dir) == expected:
                break
        assert await asyncio.to_thread(_served_serial, port, client_dir) == expected
    finally:
        stop.set()
        await serving


async def test_the_client_signs_a_token_for_its_audience_and_reuses_it(pki: dict[str, Path]) -> None:
    gateway = WorkloadCertificate(pki["gateway"])
    auth = WorkloadTokenAuth(gateway, gateway.spiffe_id.sibling("policy"))
    first = auth.token()
    assert auth.token() == first
    assert str(verifier(pki).verify(first)) == "spiffe://maestro.local/ns/ig/sa/gateway"


async def test_the_client_certificate_guard_takes_the_caller_from_the_verified_certificate(
        pki: dict[str, Path]) -> None:
    """For callers that cannot sign tokens (nginx auth_request): serve_http hands the handshake's client
    certificate to the app (ASGI TLS extension) and ClientCertificateGuard applies the table's rows to it."""
    app = FastAPI()

    @app.post("/access/v1/evaluation")
    async def evaluation(request: Request) -> dict[str, str]:
        return {"caller": str(request.scope[CALLER_SCOPE_KEY])}

    port, stop = free_port(), asyncio.Event()
    guarded = guarded_by_client_certificate(app, TABLE, WorkloadCertificate(pki["policy"]))
    serving = asyncio.create_task(serve_http(guarded, "127.0.0.1", port, stop, tls=WorkloadCertificate(pki["policy"]),
                                             expose_client_certificate=True))

    def ask(caller: str) -> httpx.Response:
        context = ssl.create_default_context(cafile=str(pki[caller] / CA_FILE))
        context.load_cert_chain(pki[caller] / CERT_FILE, pki[caller] / KEY_FILE)
        with httpx.Client(verify=context, timeout=10) as client:
            for _ in range(100):
                try:
                    return client.post(f"https://localhost:{port}/access/v1/evaluation")
                except httpx.TransportError:
                    time.sleep(0.1)
        raise AssertionError("the listener did not start")

    try:
        granted, refused, unknown = [await asyncio.to_thread(ask, c) for c in ("gateway", "operator", "intruder")]
    finally:
        stop.set()
        await serving
    assert granted.status_code == 200 and granted.json() == {"caller": "spiffe://maestro.local/ns/ig/sa/gateway"}
    assert refused.status_code == 403
    assert refused.json()["detail"] == \
        "POST /access/v1/evaluation is not granted to spiffe://maestro.local/ns/ig/sa/operator"
    assert unknown.status_code == 401 and "intruder is not known" in unknown.json()["detail"]


async def test_without_the_tls_extension_the_client_certificate_guard_refuses(pki: dict[str, Path]) -> None:
    guarded = guarded_by_client_certificate(guarded_app(pki), TABLE, WorkloadCertificate(pki["policy"]))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=guarded), base_url="http://t") as client:
        reply = await client.post("/access/v1/evaluation")
    assert reply.status_code == 401 and "client certificate" in reply.json()["detail"]
