"""The end user a workload forwards: a short-lived JWT it signs with its own workload key.

The portal verifies the OIDC user at its front door; when it calls the evidence service for that user it sends
this token (``x-ig-user-token``). The callee verifies it with the public key of the very certificate the mTLS peer
presented, so only the workload that holds the key can speak for a user, and only on its own connection.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ig_common.spiffe import SpiffeId

USER_TOKEN_METADATA = "x-ig-user-token"
MAX_LIFETIME_SECONDS = 60
_ALGORITHM = "ES256"
_LEEWAY_SECONDS = 5


class UserTokenError(ValueError):
    """The forwarded user token is missing a claim, expired, or not signed by the calling workload."""


@dataclass(frozen=True)
class ForwardedUser:
    subject: str
    tenant: str
    roles: tuple[str, ...]


def sign_user_token(key_pem: bytes, issuer: SpiffeId, audience: SpiffeId, user: ForwardedUser,
                    *, lifetime: int = 30, now: float | None = None) -> str:
    if not 0 < lifetime <= MAX_LIFETIME_SECONDS:
        raise ValueError(f"lifetime: 1..{MAX_LIFETIME_SECONDS} seconds")
    issued = int(now if now is not None else time.time())
    claims = {"iss": str(issuer), "aud": str(audience), "sub": user.subject, "tenant": user.tenant,
              "roles": list(user.roles), "iat": issued, "exp": issued + lifetime, "jti": uuid.uuid4().hex}
    return jwt.encode(claims, serialization.load_pem_private_key(key_pem, password=None),  # type: ignore[arg-type]
                      algorithm=_ALGORITHM)


def verify_user_token(token: str, peer_cert_pem: bytes, caller: SpiffeId, audience: SpiffeId) -> ForwardedUser:
    """The user, when ``token`` was signed by the peer's own certificate key, for ``audience``, and is fresh."""
    public_key = x509.load_pem_x509_certificate(peer_cert_pem).public_key()
    try:
        claims = jwt.decode(token, public_key, algorithms=[_ALGORITHM],  # type: ignore[arg-type]
                            audience=str(audience), issuer=str(caller), leeway=_LEEWAY_SECONDS,
                            options={"require": ["iss", "aud", "sub", "exp", "iat"], "verify_iat": False})
    except jwt.PyJWTError as error:
        raise UserTokenError(f"{USER_TOKEN_METADATA}: {error}") from error
    if int(claims["exp"]) - int(claims["iat"]) > MAX_LIFETIME_SECONDS:
        raise UserTokenError(f"{USER_TOKEN_METADATA}: lifetime over {MAX_LIFETIME_SECONDS} s")
    tenant, roles = claims.get("tenant"), claims.get("roles", [])
    if not isinstance(tenant, str) or not tenant:
        raise UserTokenError(f"{USER_TOKEN_METADATA}: no tenant claim")
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise UserTokenError(f"{USER_TOKEN_METADATA}: roles must be a list of strings")
    return ForwardedUser(str(claims["sub"]), tenant, tuple(roles))
