"""OpenID Connect against the configured provider: discovery, PKCE, code exchange, JWKS-verified tokens."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
import structlog

log = structlog.get_logger(__name__)

ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]


class TokenRejected(Exception):
    """The token is not one the portal accepts; the message says why (never sent to the client verbatim)."""


class ProviderUnavailable(Exception):
    """Discovery, JWKS or the token endpoint could not be reached."""


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge) per RFC 7636."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


@dataclass
class Provider:
    issuer: str
    client_id: str
    client_secret: str
    skew_seconds: int
    jwks_refetch_seconds: float
    http: httpx.AsyncClient
    # How long a verified bearer token's claims are reused (never past its exp); 0 verifies every request.
    verified_cache_seconds: float = 300.0
    verified_cache_size: int = 10_000
    # Clients whose tokens are API credentials (bearer): the token's authorized party (azp, or its single aud)
    # must be one of them. The browser sign-in client is never one: its ID tokens only ever start a session.
    api_clients: tuple[str, ...] = ()
    # The JWKS is refetched when its Cache-Control max-age runs out (capped here; this when it names none).
    jwks_max_age_seconds: float = 3600.0

    def __post_init__(self) -> None:
        self._verified: OrderedDict[str, tuple[dict[str, Any], float, str]] = OrderedDict()
        self._metadata: dict[str, Any] | None = None
        self._keys: dict[str, jwt.PyJWK] = {}
        self._keys_fetched_at: float | None = None
        self._keys_expire_at = 0.0
        self._lock = asyncio.Lock()

    async def metadata(self) -> dict[str, Any]:
        if self._metadata is None:
            url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
            body = await self._get_json(url)
            if body.get("issuer") != self.issuer:
                raise ProviderUnavailable(f"discovery names issuer {body.get('issuer')!r}, expected {self.issuer!r}")
            self._metadata = body
        return self._metadata

    async def authorization_url(self, redirect_uri: str, state: str, nonce: str, challenge: str) -> str:
        endpoint = (await self.metadata())["authorization_endpoint"]
        query = {"response_type": "code", "client_id": self.client_id, "redirect_uri": redirect_uri,
                 "scope": "openid email profile groups", "state": state, "nonce": nonce,
                 "code_challenge": challenge, "code_challenge_method": "S256"}
        return f"{endpoint}?{urlencode(query)}"

    async def exchange_code(self, code: str, verifier: str, redirect_uri: str) -> str:
        """The ID token for an authorization code (PKCE verifier included)."""
        endpoint = (await self.metadata())["token_endpoint"]
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
                "code_verifier": verifier, "client_id": self.client_id}
        try:
            if self.client_secret:
                response = await self.http.post(endpoint, data=form, auth=(self.client_id, self.client_secret))
            else:
                response = await self.http.post(endpoint, data=form)
        except httpx.HTTPError as error:
            raise ProviderUnavailable(f"token endpoint: {error}") from error
        if response.status_code != 200:
            raise TokenRejected(f"code exchange refused: {response.status_code} {response.text[:200]}")
        token = response.json().get("id_token")
        if not isinstance(token, str):
            raise TokenRejected("token endpoint returned no id_token")
        return token

    async def verify(self, token: str, *, nonce: str | None = None) -> dict[str, Any]:
        """Claims of ``token`` after checking signature (JWKS), iss, aud, exp, nbf, iat within the skew.

        API clients send the same token with every request; its signature and claims cannot change, so a token
        verified once is remembered (by its SHA-256) for a while and only its expiry is re-checked. That saves
        the RSA verification and JSON parsing on every request without accepting anything the full check
        would refuse: exp is checked on each use, nbf and iat only get more satisfied as time passes."""
        if nonce is None:
            remembered = self._remembered(token)
            if remembered is not None:
                return remembered
        claims, kid = await self._verify(token, nonce=nonce)
        if nonce is None:
            self._remember(token, claims, kid)
        return claims

    def _remembered(self, token: str) -> dict[str, Any] | None:
        digest = hashlib.sha256(token.encode()).hexdigest()
        found = self._verified.get(digest)
        if found is None:
            return None
        claims, until, kid = found
        # A key the provider has since withdrawn (or a JWKS past its max-age) sends the token to the full check.
        if (time.monotonic() >= until or time.time() >= claims["exp"] + self.skew_seconds or kid not in self._keys
                or time.monotonic() >= self._keys_expire_at):
            del self._verified[digest]
            return None
        return dict(claims)

    def _remember(self, token: str, claims: dict[str, Any], kid: str) -> None:
        lifetime = min(self.verified_cache_seconds, claims["exp"] + self.skew_seconds - time.time())
        if lifetime <= 0:
            return
        self._verified[hashlib.sha256(token.encode()).hexdigest()] = (dict(claims), time.monotonic() + lifetime,
                                                                      kid)
        while len(self._verified) > self.verified_cache_size:
            self._verified.popitem(last=False)

    async def _verify(self, token: str, *, nonce: str | None) -> tuple[dict[str, Any], str]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as error:
            raise TokenRejected(f"malformed token: {error}") from error
        if header.get("alg") not in ALGORITHMS:
            raise TokenRejected(f"algorithm {header.get('alg')!r} not accepted")
        kid = header.get("kid")
        key = await self._key(kid)
        # A sign-in's ID token is for this portal's browser client; a bearer token must come from an API client.
        clients = (self.client_id,) if nonce is not None else self.api_clients
        if not clients:
            raise TokenRejected("no client may call the API with a bearer token (IG_OIDC_API_CLIENTS is empty)")
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key=key.key, algorithms=[str(header["alg"])], audience=list(clients), issuer=self.issuer,
                leeway=self.skew_seconds, options={"require": ["exp", "iat", "iss", "aud", "sub"]})
        except jwt.PyJWTError as error:
            raise TokenRejected(str(error)) from error
        if claims["iat"] > time.time() + self.skew_seconds:
            raise TokenRejected("token issued in the future")
        party = authorized_party(claims)
        if party not in clients:
            raise TokenRejected(f"token was issued to client {party!r}, not one allowed here")
        if nonce is not None and claims.get("nonce") != nonce:
            raise TokenRejected("nonce mismatch")
        return claims, str(kid)

    async def _key(self, kid: object) -> jwt.PyJWK:
        if not isinstance(kid, str) or not kid:
            raise TokenRejected("token has no key id")
        if kid in self._keys and time.monotonic() < self._keys_expire_at:
            return self._keys[kid]
        async with self._lock:
            now = time.monotonic()
            fetched = self._keys_fetched_at
            if now >= self._keys_expire_at:
                # The key set's max-age ran out: refetch (a provider that is down fails closed, 503).
                await self._refresh_keys()
            elif kid not in self._keys and (fetched is None or now - fetched >= self.jwks_refetch_seconds):
                # An unknown kid may mean the provider rotated keys: refetch, but not more often than the bound.
                await self._refresh_keys()
        if kid not in self._keys:
            raise TokenRejected(f"unknown key id {kid!r}")
        return self._keys[kid]

    async def _refresh_keys(self) -> None:
        response = await self._get((await self.metadata())["jwks_uri"])
        body = _json_object(response)
        keys: dict[str, jwt.PyJWK] = {}
        for raw in body.get("keys", []):
            try:
                key = jwt.PyJWK(raw)
            except jwt.PyJWTError:
                continue
            if key.key_id:
                keys[key.key_id] = key
        self._keys = keys
        self._keys_fetched_at = time.monotonic()
        max_age = cache_max_age(response.headers.get("cache-control", ""))
        ttl = self.jwks_max_age_seconds if max_age is None else min(max_age, self.jwks_max_age_seconds)
        # Never below the refetch bound: a provider answering max-age=0 must not be fetched on every request.
        self._keys_expire_at = self._keys_fetched_at + max(ttl, self.jwks_refetch_seconds)
        log.info("jwks_refreshed", keys=sorted(keys), ttl_seconds=max(ttl, self.jwks_refetch_seconds))

    async def _get(self, url: str) -> httpx.Response:
        try:
            response = await self.http.get(url)
            response.raise_for_status()
        except httpx.HTTPError as error:
            raise ProviderUnavailable(f"{url}: {error}") from error
        return response

    async def _get_json(self, url: str) -> dict[str, Any]:
        return _json_object(await self._get(url))


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as error:
        raise ProviderUnavailable(f"{response.url}: {error}") from error
    if not isinstance(body, dict):
        raise ProviderUnavailable(f"{response.url}: not a JSON object")
    return body


def cache_max_age(cache_control: str) -> float | None:
    """``max-age`` of a Cache-Control header in seconds (``no-cache``/``no-store`` count as 0), None if absent."""
    for directive in cache_control.lower().split(","):
        name, _, value = directive.strip().partition("=")
        if name in ("no-cache", "no-store"):
            return 0.0
        if name == "max-age":
            try:
                return max(0.0, float(int(value.strip().strip('"'))))
            except ValueError:
                return None
    return None


def authorized_party(claims: dict[str, Any]) -> str:
    """The client a token was issued to: ``azp`` when present (OIDC Core 2: required when aud has several
    values), else the single audience. A multi-audience token without azp names no party."""
    azp = claims.get("azp")
    if isinstance(azp, str) and azp:
        return azp
    aud = claims.get("aud")
    if isinstance(aud, str):
        return aud
    if isinstance(aud, list) and len(aud) == 1 and isinstance(aud[0], str):
        return aud[0]
    return ""
