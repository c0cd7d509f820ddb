"""A workload's identity over HTTP: a short-lived JWT it signs with its own workload key, its certificate inside.

uvicorn can require a client certificate but does not hand it to the application, so an HTTP callee that must
know who calls cannot read the TLS peer. The caller signs a token (ES256, lifetime ≤ 60 s, audience = the callee's
SPIFFE ID) and puts its certificate in the ``x5c`` header; the callee verifies that certificate against its own
``ca.crt`` (as a client certificate, at the present time), takes the SPIFFE ID from its URI SAN, and checks the
signature with its key. A token is worth nothing without the private key of a certificate the CA issued.
"""

from __future__ import annotations

import base64
import datetime
import time
import uuid

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from ig_common.spiffe import SpiffeId

AUTHORIZATION_HEADER = "Authorization"
MAX_LIFETIME_SECONDS = 60
_ALGORITHM = "ES256"
_LEEWAY_SECONDS = 5
_REMEMBERED_TOKENS = 4096


class WorkloadTokenError(ValueError):
    """The bearer token is malformed, expired, not for this audience, or not signed by a certificate of the CA."""


def sign_workload_token(key_pem: bytes, cert_pem: bytes, issuer: SpiffeId, audience: SpiffeId,
                        *, lifetime: int = 60, now: float | None = None) -> str:
    if not 0 < lifetime <= MAX_LIFETIME_SECONDS:
        raise ValueError(f"lifetime: 1..{MAX_LIFETIME_SECONDS} seconds")
    issued = int(now if now is not None else time.time())
    der = x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
    claims = {"iss": str(issuer), "sub": str(issuer), "aud": str(audience), "iat": issued,
              "exp": issued + lifetime, "jti": uuid.uuid4().hex}
    key = serialization.load_pem_private_key(key_pem, password=None)
    return jwt.encode(claims, key, algorithm=_ALGORITHM,  # type: ignore[arg-type]
                      headers={"x5c": [base64.b64encode(der).decode("ascii")]})


class WorkloadTokenVerifier:
    """Verifies tokens sent to ``own`` (a SPIFFE ID) against the CA certificates in ``ca_pem``."""

    def __init__(self, ca_pem: bytes, own: SpiffeId) -> None:
        self._store = Store(x509.load_pem_x509_certificates(ca_pem))
        self._own = own
        # A caller reuses its token for up to half a minute: verifying the chain and the signature again for each
        # request would cost about 0.3 ms of CPU. A remembered token is still refused once it expires.
        self._verified: dict[str, tuple[SpiffeId, int]] = {}

    def verify(self, token: str) -> SpiffeId:
        """The caller's SPIFFE ID; raises WorkloadTokenError for anything short of a valid token."""
        remembered = self._verified.get(token)
        if remembered is not None:
            if remembered[1] + _LEEWAY_SECONDS >= time.time():
                return remembered[0]
            del self._verified[token]
        caller, expires = self._verify(token)
        if len(self._verified) >= _REMEMBERED_TOKENS:
            self._verified.clear()
        self._verified[token] = (caller, expires)
        return caller

    def _verify(self, token: str) -> tuple[SpiffeId, int]:
        certificate = self._presented_certificate(token)
        caller = self._verified_identity(certificate)
        try:
            claims = jwt.decode(token, certificate.public_key(), algorithms=[_ALGORITHM],  # type: ignore[arg-type]
                                audience=str(self._own), leeway=_LEEWAY_SECONDS,
                                options={"require": ["aud", "exp", "iat"], "verify_iat": False})
        except jwt.PyJWTError as error:
            raise WorkloadTokenError(str(error)) from error
        if int(claims["exp"]) - int(claims["iat"]) > MAX_LIFETIME_SECONDS:
            raise WorkloadTokenError(f"lifetime over {MAX_LIFETIME_SECONDS} s")
        if claims.get("iss", str(caller)) != str(caller):
            raise WorkloadTokenError("iss is not the certificate's SPIFFE ID")
        return caller, int(claims["exp"])

    @staticmethod
    def _presented_certificate(token: str) -> x509.Certificate:
        try:
            header = jwt.get_unverified_header(token)
            chain = header.get("x5c")
            if not isinstance(chain, list) or not chain or not isinstance(chain[0], str):
                raise WorkloadTokenError("no x5c certificate in the token header")
            return x509.load_der_x509_certificate(base64.b64decode(chain[0], validate=True))
        except (jwt.PyJWTError, ValueError) as error:
            if isinstance(error, WorkloadTokenError):
                raise
            raise WorkloadTokenError(f"unreadable token or x5c certificate: {error}") from error

    def _verified_identity(self, certificate: x509.Certificate) -> SpiffeId:
        verifier = PolicyBuilder().store(self._store).time(datetime.datetime.now(datetime.UTC)) \
            .build_client_verifier()
        try:
            verified = verifier.verify(certificate, [])
        except VerificationError as error:
            raise WorkloadTokenError(f"x5c certificate not issued by this CA: {error}") from error
        uris = [s.value for s in verified.subjects or [] if isinstance(s, x509.UniformResourceIdentifier)]
        ids = [found for found in map(SpiffeId.parse, uris) if found is not None]
        if len(ids) != 1:
            raise WorkloadTokenError(f"x5c certificate needs exactly one SPIFFE ID URI SAN, has {uris}")
        return ids[0]
