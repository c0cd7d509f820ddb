"""A real gateway in front of an API: Debian's nginx with ``auth_request`` asks the policy service's forward-auth
endpoint (HTTPS, the gateway's client certificate) before proxying to a small upstream. Allowed requests reach the
upstream carrying the decision headers; denied ones get 403 with the explanation, step-up ones 401 with the
RFC 9470 challenge (nginx drops the auth subrequest's body, so ids and explanation travel in headers via
``auth_request_set`` and are answered through ``error_page``); the decision log holds the same ids."""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from ig_common.tls import CA_FILE, CERT_FILE, KEY_FILE
from ig_policy.testing import RunningService, free_port, opa_server, policy_service, set_test_clock

pytestmark = pytest.mark.e2e

MONDAY = "2026-01-05T10:00:00Z"
ISSUER, AUDIENCE = "https://idp.example", "cases-api"
# What an operator writes: one route, the tenant and id from the path, the rest from the user's token and headers.
ROUTES = [{
    "name": "cases", "path": "/api/{tenant}/cases/{id}",
    "fields": {"resource.type": "const:case", "resource.id": "path:id", "resource.tenant": "path:tenant",
               "resource.purpose": "header:x-purpose", "resource.classification": "const:internal",
               "context.region": "const:region-a", "context.device_trust": "header:x-device-trust",
               "context.session_risk": "header:x-session-risk"},
    "zones": {"corp": ["127.0.0.0/8"]},
}]
NGINX_CONF = """
worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 64; }}
http {{
  access_log {work}/access.log;
  client_body_temp_path {work}/body; proxy_temp_path {work}/proxy; fastcgi_temp_path {work}/fastcgi;
  uwsgi_temp_path {work}/uwsgi; scgi_temp_path {work}/scgi;
  upstream policy_forward_auth {{
    server {policy_address};
    keepalive 8;  # one TLS handshake per pooled connection, not one per auth subrequest
  }}
  server {{
    listen 127.0.0.1:{port};
    location /api/ {{
      auth_request /_ig_authz;
      auth_request_set $ig_decision_id $upstream_http_x_ig_decision_id;
      auth_request_set $ig_rule_id $upstream_http_x_ig_rule_id;
      auth_request_set $ig_explanation $upstream_http_x_ig_explanation;
      auth_request_set $ig_challenge $upstream_http_www_authenticate;
      proxy_set_header X-IG-Decision-Id $ig_decision_id;
      proxy_set_header X-IG-Rule-Id $ig_rule_id;
      proxy_pass http://127.0.0.1:{upstream};
      error_page 401 = @step_up;
      error_page 403 = @denied;
    }}
    location = /_ig_authz {{
      internal;
      proxy_pass https://policy_forward_auth/forward-auth;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_ssl_session_reuse on;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Forwarded-Method $request_method;
      proxy_set_header X-Forwarded-Uri $request_uri;
      proxy_set_header X-Forwarded-Host $host;
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_ssl_certificate {tls}/{cert};
      proxy_ssl_certificate_key {tls}/{key};
      proxy_ssl_trusted_certificate {tls}/{ca};
      proxy_ssl_verify on;
      proxy_ssl_name localhost;
    }}
    location @denied {{
      add_header X-IG-Decision-Id $ig_decision_id always;
      add_header X-IG-Rule-Id $ig_rule_id always;
      default_type application/problem+json;
      return 403 '{{"title": "Forbidden", "status": 403, "detail": "$ig_explanation"}}';
    }}
    location @step_up {{
      add_header WWW-Authenticate $ig_challenge always;
      add_header X-IG-Decision-Id $ig_decision_id always;
      add_header X-IG-Rule-Id $ig_rule_id always;
      default_type application/problem+json;
      return 401 '{{"title": "Step-up required", "status": 401, "detail": "$ig_explanation"}}';
    }}
  }}
}}
"""


class _Echo(BaseHTTPRequestHandler):
    """The upstream API: answers with the headers it received."""

    def do_GET(self) -> None:
        body = json.dumps({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def upstream() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    public = tmp_path_factory.mktemp("idp") / "idp.pub.pem"
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()), public


def bearer(private: bytes, **claims: Any) -> dict[str, str]:
    now = int(time.time())
    token = jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": "u-alice", "tenant": "alpha", "roles": ["analyst"],
                        "purposes": ["investigation"], "acr": "pwd", "iat": now, "exp": now + 300, **claims},
                       private, algorithm="ES256")
    return {"Authorization": f"Bearer {token}", "X-Purpose": "investigation", "X-Device-Trust": "high",
            "X-Session-Risk": "10"}


@pytest.fixture(scope="module")
def service(infra: Any, database_url: str, issuer: tuple[bytes, Path],
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    scratch = tmp_path_factory.mktemp("nginx-policy")
    set_test_clock(scratch / "clock", MONDAY)
    with opa_server() as opa:
        env = {**infra.env(database_url, "policy"), **opa.env()}
        with policy_service(env, scratch / "policy.log", opa_timeout_ms="5000", decision_log_flush_ms="20",
                            test_clock_file=str(scratch / "clock"), gateway_routes=json.dumps(ROUTES),
                            gateway_jwt_public_key_file=str(issuer[1]), gateway_jwt_issuer=ISSUER,
                            gateway_jwt_audience=AUDIENCE) as running:
            yield running


@pytest.fixture(scope="module")
def nginx(service: RunningService, upstream: int, infra: Any,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)
    assert binary, "nginx is missing: `make test` installs Debian's nginx-light (policy-gateway-prereqs)"
    work = tmp_path_factory.mktemp("nginx")
    port = free_port()
    config = work / "nginx.conf"
    config.write_text(NGINX_CONF.format(work=work, port=port, upstream=upstream,
                                        policy_address=service.forward_auth_url.removeprefix("https://"),
                                        tls=infra.identities.issued("gateway").directory, cert=CERT_FILE,
                                        key=KEY_FILE, ca=CA_FILE))
    process = subprocess.Popen([binary, "-c", str(config), "-p", str(work), "-e", str(work / "error.log")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{url}/healthz-none", timeout=1)
            break
        except httpx.TransportError:
            assert process.poll() is None, (work / "error.log").read_text(errors="replace")
            assert time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.1)
    yield url
    process.terminate()
    process.wait(timeout=10)


async def _logged(database_url: str, decision_id: str) -> dict[str, Any] | None:
    conn = await asyncpg.connect(database_url)
    try:
        for _ in range(100):
            record = await conn.fetchval("SELECT record FROM policy.decision_log WHERE decision_id = $1", decision_id)
            if record:
                return dict(json.loads(record))
            await asyncio.sleep(0.1)
    finally:
        await conn.close()
    return None


async def test_an_allowed_request_reaches_the_upstream_with_the_decision_headers(
    nginx: str, issuer: tuple[bytes, Path], database_url: str
) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        reply = await client.get(f"{nginx}/api/alpha/cases/case-1",
                                 headers={**bearer(issuer[0]), "X-IG-Decision-Id": "dec_forged"})
    assert reply.status_code == 200, reply.text
    seen = reply.json()["headers"]
    assert seen["x-ig-rule-id"] == "ig.purpose.allow_read"
    assert seen["x-ig-decision-id"].startswith("dec_") and seen["x-ig-decision-id"] != "dec_forged"
    logged = await _logged(database_url, seen["x-ig-decision-id"])
    assert logged is not None, "the decision the upstream names is in the decision log"
    assert (logged["result"], logged["ruleId"], logged["input"]["resource"]["id"]) == (
        "allow", "ig.purpose.allow_read", "case-1")


async def test_a_denied_request_gets_403_with_the_explanation(
    nginx: str, issuer: tuple[bytes, Path], database_url: str
) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        reply = await client.get(f"{nginx}/api/alpha/cases/case-1", headers=bearer(issuer[0], tenant="beta"))
    assert reply.status_code == 403
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.headers["X-IG-Rule-Id"] == "ig.tenant.mismatch"
    assert "cross-tenant access is never allowed" in reply.json()["detail"]
    assert "beta" not in reply.text and "u-alice" not in reply.text
    logged = await _logged(database_url, reply.headers["X-IG-Decision-Id"])
    assert logged is not None and logged["result"] == "deny" and "'beta'" in logged["explanation"], \
        "the log keeps the full explanation under the same id"


def test_a_step_up_gets_401_with_the_rfc_9470_challenge(nginx: str, issuer: tuple[bytes, Path]) -> None:
    reply = httpx.get(f"{nginx}/api/alpha/cases/case-1", headers={**bearer(issuer[0]), "X-Session-Risk": "50"},
                      timeout=30)
    assert reply.status_code == 401
    challenge = reply.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer error="insufficient_user_authentication"')
    assert 'acr_values="mfa"' in challenge and "max_age=300" in challenge
    assert reply.headers["X-IG-Rule-Id"] == "ig.risk.step_up" and reply.headers["X-IG-Decision-Id"].startswith("dec_")


def test_a_request_without_a_principal_is_401(nginx: str) -> None:
    reply = httpx.get(f"{nginx}/api/alpha/cases/case-1", timeout=30)
    assert reply.status_code == 401 and reply.headers["X-IG-Rule-Id"] == "ig.gateway.no_principal"


def test_forward_auth_refuses_a_caller_without_a_granted_certificate(service: RunningService, infra: Any) -> None:
    operator = infra.identities.issued("operator").directory
    context = ssl.create_default_context(cafile=str(operator / CA_FILE))
    context.load_cert_chain(operator / CERT_FILE, operator / KEY_FILE)
    reply = httpx.get(f"{service.forward_auth_url}/forward-auth", verify=context, timeout=30)
    assert reply.status_code == 403
    assert reply.json()["detail"] == "GET /forward-auth is not granted to spiffe://maestro.local/ns/ig/sa/operator"
