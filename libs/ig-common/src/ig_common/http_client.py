"""HTTPS clients of the suite's internal HTTP APIs: the workload's certificate for TLS, a workload token per call.

The callee requires a client certificate of the CA at the handshake and, in ``Authorization: Bearer``, a token the
caller signed with the same workload key (ig_common.authz.workload_token): uvicorn does not hand the TLS peer to
the application, so the token is how the callee learns who calls. A token is reused for at most 30 s of its 60.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import Any

import httpx

from ig_common.authz.workload_token import AUTHORIZATION_HEADER, sign_workload_token
from ig_common.spiffe import SpiffeId
from ig_common.tls import Material, WorkloadCertificate, load_workload_certificate

TOKEN_LIFETIME_SECONDS = 60
TOKEN_REUSE_SECONDS = 30


class WorkloadTokenAuth(httpx.Auth):
    """Signs ``Authorization: Bearer`` for ``audience`` with the workload's current key."""

    def __init__(self, certificate: WorkloadCertificate, audience: SpiffeId) -> None:
        self._certificate = certificate
        self._audience = audience
        self._token = ""
        self._signed_at = 0.0
        self._material: Material | None = None

    def token(self) -> str:
        now = time.time()
        self._certificate.refresh()
        material = self._certificate.current()
        if material is not self._material or now - self._signed_at >= TOKEN_REUSE_SECONDS:
            self._token = sign_workload_token(material.key_pem, material.cert_pem, material.spiffe_id,
                                              self._audience, lifetime=TOKEN_LIFETIME_SECONDS, now=now)
            self._material, self._signed_at = material, now
        return self._token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers[AUTHORIZATION_HEADER] = f"Bearer {self.token()}"
        yield request


def _client_arguments(certificate: WorkloadCertificate, base_url: str, audience: str) -> dict[str, Any]:
    # The TLS context is fixed when the client is made: a long-lived caller makes a new client after a renewal.
    return {"base_url": base_url, "verify": certificate.client_ssl_context(),
            "auth": WorkloadTokenAuth(certificate, certificate.spiffe_id.sibling(audience))}


def client_as(own_name: str, base_url: str, audience: str, **httpx_args: Any) -> httpx.Client:
    """A blocking HTTPS client to ``base_url`` (the service named ``audience``) as the identity ``own_name``."""
    certificate = load_workload_certificate(own_name)
    return httpx.Client(**_client_arguments(certificate, base_url, audience), **httpx_args)

